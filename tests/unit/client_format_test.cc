// The text the C++ client and the rung CLI make: parameters and results (rung/client.h), and
// the CLI's JSON, which must read exactly as protobuf's JSON printer wrote it when the CLI
// printed generated messages itself.
#include <limits>

#include "absl/strings/str_cat.h"
#include "client/cli/format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "rung/client.h"
#include "rung/v1/experiment_service.pb.h"

namespace rung {
namespace {

std::string ProtoJson(const google::protobuf::Message& m, bool whitespace) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = whitespace;
  o.preserve_proto_field_names = true;
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(m, &out, o).ok());
  return out;
}

v1::Trial SomeTrial(const std::string& id) {
  v1::Trial t;
  t.set_id(id);
  t.set_experiment_id("e1");
  (*t.mutable_params())["lr"].set_float_value(0.001);
  (*t.mutable_params())["depth"].set_int_value(4);
  (*t.mutable_params())["opt"].set_categorical_value("sgd, \"momentum\" <fast>");
  t.set_state(v1::TRIAL_FAILED);
  t.set_message(
      "exit code 1; stderr ends:\nTraceback {x: [1, 2]}\n\tline\x01 \xe2\x80\xa8 \xc3\xa9");
  t.add_results(0.25);
  t.add_results(-3);
  (*t.mutable_last_metrics())["loss"] = 1.0 / 3;
  t.set_reports(12);
  t.set_created_unix_ms(1714564800123);
  return t;
}

v1::Experiment SomeExperiment() {
  v1::Experiment e;
  e.set_id("e1");
  e.set_state(v1::EXPERIMENT_RUNNING);
  v1::ExperimentSpec* s = e.mutable_spec();
  s->set_name("deep [nested] {json}");
  s->mutable_objective()->set_metric("loss");
  s->mutable_objective()->set_goal(v1::Objective::MINIMIZE);
  v1::ParamSpec* p = s->add_search_space();
  p->set_name("lr");
  p->set_type(v1::ParamSpec::FLOAT);
  p->set_min(1e-5);
  p->set_max(0.1);
  p->set_log(true);
  s->add_search_space()->set_name("empty");
  (*s->mutable_algorithm()->mutable_options())["startup_trials"] = "10";
  s->mutable_trial();  // present but empty
  s->mutable_trial()->add_command("python3");
  s->mutable_trial()->add_command("train.py");
  e.mutable_counts()->set_running(2);
  e.add_rung_levels(1);
  e.add_rung_levels(3);
  e.set_unschedulable("no connected worker has 2 GPUs; the largest has 1");
  return e;
}

TEST(CliJsonTest, IndentingCompactJsonGivesProtobufsOwnLayout) {
  const v1::Experiment e = SomeExperiment();
  EXPECT_EQ(cli::IndentJson(ProtoJson(e, false)), ProtoJson(e, true));
  const v1::Trial t = SomeTrial("e1-1");
  EXPECT_EQ(cli::IndentJson(ProtoJson(t, false)), ProtoJson(t, true));
  EXPECT_EQ(cli::IndentJson("{}"), ProtoJson(v1::ListExperimentsResponse(), true));
  EXPECT_EQ(cli::IndentJson("[]"), ProtoJson(google::protobuf::ListValue(), true));
}

TEST(CliJsonTest, AListOfTheClientsMessagesReadsAsTheResponseMessage) {
  // `rung -o json trials` printed a ListTrialsResponse; it now joins the trials' own JSON.
  // (A message's map fields come out in no fixed order, even between two copies of it, so the
  // layout is compared on trials with one parameter and the content on whole ones.)
  v1::ListTrialsResponse small, whole;
  std::vector<std::string> small_items, whole_items;
  for (const char* id : {"e1-1", "e1-2"}) {
    v1::Trial t = SomeTrial(id);
    *whole.add_trials() = t;
    Trial x;
    x.proto_bytes = t.SerializeAsString();
    whole_items.push_back(x.Json());
    t.mutable_params()->erase("lr");
    t.mutable_params()->erase("opt");
    *small.add_trials() = t;
    x.proto_bytes = t.SerializeAsString();
    small_items.push_back(x.Json());
  }
  EXPECT_EQ(cli::IndentJson(cli::JsonList("trials", small_items)), ProtoJson(small, true));
  v1::ListTrialsResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  cli::IndentJson(cli::JsonList("trials", whole_items)), &back)
                  .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, whole));
  // An empty repeated field is left out, as protobuf leaves it out.
  EXPECT_EQ(cli::IndentJson(cli::JsonList("experiments", {})),
            ProtoJson(v1::ListExperimentsResponse(), true));
}

TEST(CliJsonTest, StringsAndNumbersAreWrittenAsProtobufWritesThem) {
  const std::string text =
      "a\"b\\c\b\f\n\r\t<tag> & \x01\x1f\x7f \xe2\x80\xa8\xe2\x80\xa9 caf\xc3\xa9 /";
  google::protobuf::Value v;
  v.set_string_value(text);
  EXPECT_EQ(cli::JsonQuote(text), ProtoJson(v, false));
  for (double d : {0.0, 1.0, -3.0, 0.1, 1.0 / 3, 0.30000000000000004, 1e20, 123456789012345678.0,
                   5e-324, 2.5e-7, std::numeric_limits<double>::max()}) {
    v.set_number_value(d);
    EXPECT_EQ(cli::JsonNumber(d), ProtoJson(v, false)) << d;
  }
}

TEST(ClientFormatTest, ParametersAreTheShortestTextThatReadsBackTheSame) {
  EXPECT_EQ(FormatParam(0.1), "0.1");
  EXPECT_EQ(FormatParam(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatParam(1e-5), "1e-05");
  EXPECT_EQ(FormatParam(int64_t{42}), "42");
  EXPECT_EQ(FormatParam(std::string("gelu")), "gelu");
  EXPECT_EQ(FormatParams({{"x", 2.5}, {"act", std::string("relu")}, {"depth", int64_t{3}}}),
            "act=relu depth=3 x=2.5");
  EXPECT_EQ(FormatParams({}), "");
}

TEST(ClientFormatTest, AResultIsOneNumberOrOnePerObjective) {
  Experiment one;
  one.objectives = {{"loss", "minimize"}};
  Trial t;
  EXPECT_EQ(FormatResult(one, t), "-");
  t.result = 0.123456789;
  t.results = {0.123456789, 12};
  EXPECT_EQ(FormatResult(one, t), "0.123457");
  Experiment two;
  two.objectives = {{"loss", "minimize"}, {"latency_ms", "minimize"}};
  EXPECT_EQ(FormatResult(two, t), "loss=0.123457 latency_ms=12");
}

TEST(ClientFormatTest, JsonOfAStructIsItsWholeMessage) {
  v1::Experiment e = SomeExperiment();
  Experiment x;
  x.proto_bytes = e.SerializeAsString();
  EXPECT_EQ(x.Json(), ProtoJson(e, false));  // the fields the struct leaves out too
  EXPECT_EQ(Experiment().Json(), "{}");
  // Ablation results show every field of every variant, zeros and false included.
  v1::AblationResults a;
  a.set_experiment("e2");
  a.add_variants()->set_name("base");
  AblationResults r;
  r.proto_bytes = a.SerializeAsString();
  EXPECT_NE(r.Json().find(R"("variants":[{"kind":"","name":"base","dropped":[],"runs":0,"test":"",)"
                          R"("significant":false,"rank":0}])"),
            std::string::npos)
      << r.Json();
}

}  // namespace
}  // namespace rung

namespace rung {
namespace {

Segment Seg(double start, double end, int attempt, int64_t started, int64_t ended,
            const std::string& parent = "", double parent_resource = 0, int parent_attempt = 0) {
  Segment s;
  s.start = start;
  s.end = end;
  s.attempt = attempt;
  s.started_unix_ms = started;
  s.ended_unix_ms = ended;
  s.parent_trial_id = parent;
  s.parent_resource = parent_resource;
  s.parent_attempt = parent_attempt;
  return s;
}

Trial Member(const std::string& id, std::vector<Segment> segments) {
  Trial t;
  t.id = id;
  t.segments = std::move(segments);
  return t;
}

std::string Text(const std::vector<Trial>& trials, const std::string& id) {
  absl::StatusOr<std::vector<LineageStep>> steps = Lineage(trials, id);
  return steps.ok() ? cli::LineageText(*steps) : std::string(steps.status().message());
}

// The lineage follows each member's donors back to scratch, through the donor's segment whose
// attempts include the one whose checkpoint was taken, even when the donor has since trained
// another segment that ends at the same step.
TEST(LineageTest, FollowsTheDonorsToTheCheckpointTheyGave) {
  const std::vector<Trial> trials = {
      // c: 0-4, 4-8 (attempt 2), then it took z's checkpoint at 4 and trained 4-8 again.
      Member("e1-1",
             {Seg(0, 4, 1, 0, 10), Seg(4, 8, 2, 10, 20), Seg(4, 8, 3, 30, 40, "e1-3", 4, 1)}),
      // x took c's checkpoint at 8 (attempt 2) at time 25, and waited for a slot.
      Member("e1-2", {Seg(0, 4, 1, 0, 10), Seg(8, 12, 2, 25, 50, "e1-1", 8, 2)}),
      Member("e1-3", {Seg(0, 4, 1, 0, 10), Seg(4, 8, 2, 10, 20)}),
      // a took x's checkpoint while x still held c's, at time 45: its parent is c's attempt 2.
      Member("e1-4", {Seg(0, 4, 1, 0, 10), Seg(8, 12, 2, 45, 60, "e1-1", 8, 2)}),
  };
  EXPECT_EQ(Text(trials, "e1-3"), "e1-3 0-8");
  EXPECT_EQ(Text(trials, "e1-1"), "e1-3 0-4 | e1-1 4-8");
  EXPECT_EQ(Text(trials, "e1-2"), "e1-1 0-8 | e1-2 8-12");
  EXPECT_EQ(Text(trials, "e1-4"), "e1-1 0-8 | e1-4 8-12");
  // Without the attempts (stored before rungd kept them), the times decide, and the last
  // segment of c that ended at 8 before a began is c's second 4-8: another model.
  std::vector<Trial> old = trials;
  old[3].segments[1].parent_attempt = 0;
  EXPECT_EQ(Text(old, "e1-4"), "e1-3 0-4 | e1-1 4-8 | e1-4 8-12");
  EXPECT_EQ(Text(trials, "e1-9"), "no trial e1-9");
  EXPECT_EQ(Text({Member("e2-1", {})}, "e2-1").substr(0, 27), "trial e2-1 has no lineage: ");
  // A donor with no segment at the step it gave: the chain breaks, and says where.
  std::vector<Trial> broken = trials;
  broken[1].segments[1].parent_resource = 6;
  EXPECT_EQ(Text(broken, "e1-2"),
            "the lineage of e1-2 breaks at e1-1: no segment of it ended at 6 with the checkpoint "
            "a member took");
}

}  // namespace
}  // namespace rung
