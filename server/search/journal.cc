#include "server/search/journal.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "server/search/stopping.h"

namespace rung::search {
namespace {

// A word with no spaces that reads back as `s`.
std::string Word(absl::string_view s) {
  return s.empty() ? "\\0" : absl::StrReplaceAll(absl::CEscape(s), {{" ", "\\040"}});
}

bool Unword(absl::string_view w, std::string* s) {
  if (w == "\\0") {
    s->clear();
    return true;
  }
  return absl::CUnescape(w, s);
}

std::string ValueText(const ParamValue& v) {
  if (const auto* d = std::get_if<double>(&v)) return absl::StrCat("d:", DoubleText(*d));
  if (const auto* i = std::get_if<int64_t>(&v)) return absl::StrCat("i:", *i);
  return absl::StrCat("s:", Word(std::get<std::string>(v)));
}

bool ParseValue(absl::string_view w, ParamValue* v) {
  if (w.size() < 2 || w[1] != ':') return false;
  absl::string_view rest = w.substr(2);
  switch (w[0]) {
    case 'd': {
      double d;
      if (!ParseDouble(rest, &d)) return false;
      *v = d;
      return true;
    }
    case 'i': {
      int64_t i;
      if (!absl::SimpleAtoi(rest, &i)) return false;
      *v = i;
      return true;
    }
    case 's': {
      std::string s;
      if (!Unword(rest, &s)) return false;
      *v = std::move(s);
      return true;
    }
  }
  return false;
}

// Reads the words of a line in order.
class Words {
 public:
  explicit Words(absl::string_view text) : w_(absl::StrSplit(text, ' ', absl::SkipEmpty())) {}
  bool Done() const { return at_ == w_.size(); }
  bool Next(absl::string_view* w) {
    if (at_ == w_.size()) return false;
    *w = w_[at_++];
    return true;
  }
  bool Int(int* i) {
    absl::string_view w;
    return Next(&w) && absl::SimpleAtoi(w, i);
  }
  bool Double(double* d) {
    absl::string_view w;
    return Next(&w) && ParseDouble(w, d);
  }
  bool Bool(bool* b) {
    int i;
    if (!Int(&i) || (i != 0 && i != 1)) return false;
    *b = i == 1;
    return true;
  }

 private:
  std::vector<absl::string_view> w_;
  size_t at_ = 0;
};

char OutcomeLetter(TrialClosed::Outcome o) {
  switch (o) {
    case TrialClosed::Outcome::kCompleted:
      return 'c';
    case TrialClosed::Outcome::kFailed:
      return 'f';
    case TrialClosed::Outcome::kStopped:
      return 's';
  }
  return '?';
}

}  // namespace

std::string EventText(const Event& event) {
  if (const auto* w = std::get_if<TrialsWanted>(&event)) {
    std::string s = absl::StrCat("wanted ", w->count, " ", w->adopt ? 1 : 0);
    if (w->proposal) {
      absl::StrAppend(&s, " proposal ", w->proposal->index, " ", w->proposal->params.size());
      for (const auto& [k, v] : w->proposal->params)
        absl::StrAppend(&s, " ", Word(k), " ", ValueText(v));
      absl::StrAppend(&s, " ", w->proposal->model.size());
      for (const std::string& line : w->proposal->model) absl::StrAppend(&s, " ", Word(line));
    }
    return s;
  }
  if (const auto* r = std::get_if<TrialReported>(&event)) {
    return absl::StrCat("reported ", r->index, " ", DoubleText(r->resource), " ",
                        DoubleText(r->value));
  }
  if (const auto* p = std::get_if<TrialPaused>(&event)) return absl::StrCat("paused ", p->index);
  const auto& c = std::get<TrialClosed>(event);
  std::string s = absl::StrCat("closed ", c.index, " ", std::string(1, OutcomeLetter(c.outcome)),
                               " ", c.has_result ? 1 : 0, " ", DoubleText(c.result), " ",
                               c.feasible ? 1 : 0, " ", c.results.size());
  for (double r : c.results) absl::StrAppend(&s, " ", DoubleText(r));
  return s;
}

absl::StatusOr<Event> ParseEvent(absl::string_view text) {
  Words in(text);
  absl::string_view kind;
  bool ok = in.Next(&kind);
  Event event;
  if (ok && kind == "wanted") {
    TrialsWanted w;
    ok = in.Int(&w.count) && in.Bool(&w.adopt);
    absl::string_view tag;
    if (ok && in.Next(&tag)) {
      Proposal p;
      int params = 0, lines = 0;
      ok = tag == "proposal" && in.Int(&p.index) && in.Int(&params) && params >= 0;
      for (int k = 0; ok && k < params; ++k) {
        absl::string_view name, value;
        std::string key;
        ParamValue v;
        ok = in.Next(&name) && in.Next(&value) && Unword(name, &key) && ParseValue(value, &v);
        p.params[key] = std::move(v);
      }
      ok = ok && in.Int(&lines) && lines >= 0;
      for (int k = 0; ok && k < lines; ++k) {
        absl::string_view word;
        std::string line;
        ok = in.Next(&word) && Unword(word, &line);
        p.model.push_back(std::move(line));
      }
      w.proposal = std::move(p);
    }
    event = std::move(w);
  } else if (ok && kind == "reported") {
    TrialReported r;
    ok = in.Int(&r.index) && in.Double(&r.resource) && in.Double(&r.value);
    event = r;
  } else if (ok && kind == "paused") {
    TrialPaused p;
    ok = in.Int(&p.index);
    event = p;
  } else if (ok && kind == "closed") {
    TrialClosed c;
    absl::string_view outcome;
    int n = 0;
    ok = in.Int(&c.index) && in.Next(&outcome) && in.Bool(&c.has_result) && in.Double(&c.result) &&
         in.Bool(&c.feasible) && in.Int(&n) && n >= 0;
    c.outcome = outcome == "c"   ? TrialClosed::Outcome::kCompleted
                : outcome == "f" ? TrialClosed::Outcome::kFailed
                                 : TrialClosed::Outcome::kStopped;
    ok = ok && (outcome == "c" || outcome == "f" || outcome == "s");
    for (int k = 0; ok && k < n; ++k) {
      double r;
      ok = in.Double(&r);
      c.results.push_back(r);
    }
    event = std::move(c);
  } else {
    ok = false;
  }
  if (!ok || !in.Done()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a searcher event: \"", absl::CHexEscape(text.substr(0, 200)), "\""));
  }
  return event;
}

std::string ActionsText(const std::vector<Action>& actions) {
  std::vector<std::string> out;
  for (const Action& a : actions) {
    if (const auto* c = std::get_if<Create>(&a)) {
      std::string s = absl::StrCat("create ", c->index, " ", DoubleText(c->budget));
      for (const auto& [k, v] : c->params) absl::StrAppend(&s, " ", Word(k), "=", ValueText(v));
      out.push_back(std::move(s));
    } else if (const auto* s = std::get_if<Stop>(&a)) {
      out.push_back(absl::StrCat("stop ", s->index, " ", Word(s->reason)));
    } else if (const auto* c = std::get_if<Continue>(&a)) {
      std::string s = absl::StrCat("continue ", c->index, " ", DoubleText(c->budget));
      // PBT's exploit: the donor and the new parameters (promote mode's text is unchanged).
      if (c->from >= 0) absl::StrAppend(&s, " from ", c->from, "@", DoubleText(c->from_resource));
      for (const auto& [k, v] : c->params) absl::StrAppend(&s, " ", Word(k), "=", ValueText(v));
      out.push_back(std::move(s));
    } else {
      out.push_back("done");
    }
  }
  return absl::StrJoin(out, "; ");
}

absl::Status ReplayInto(Searcher* searcher, const std::vector<JournalEntry>& journal,
                        int64_t* replayed) {
  *replayed = 0;
  if (journal.empty() || (journal[0].call != "start" && journal[0].call != "checkpoint")) {
    return absl::FailedPreconditionError(
        "the journal does not begin with a snapshot of the searcher (its start or a checkpoint)");
  }
  RETURN_IF_ERROR(searcher->Restore(journal[0].actions));
  absl::Status first = absl::OkStatus();
  for (size_t i = 1; i < journal.size(); ++i) {
    const JournalEntry& e = journal[i];
    std::string got;
    if (e.call == "propose") {
      got = searcher->Propose() ? "" : "(no job)";
    } else if (e.call == "checkpoint") {
      if (searcher->Snapshot() != e.actions) {
        if (first.ok()) {
          first = absl::FailedPreconditionError(absl::StrCat(
              "journal entry ", i,
              " (a checkpoint): every decision before it replays "
              "identically, but the replayed searcher's state differs from the saved one"));
        }
        RETURN_IF_ERROR(searcher->Restore(e.actions));  // go on from what was decided
      } else if (first.ok()) {
        ++*replayed;
      }
      continue;
    } else {
      ASSIGN_OR_RETURN(Event event, ParseEvent(e.call));
      got = ActionsText(searcher->Handle(event));
    }
    if (got != e.actions) {
      if (first.ok()) {
        first = absl::FailedPreconditionError(absl::StrCat(
            "journal entry ", i, " (", e.call.substr(0, 200), "): recorded \"",
            e.actions.substr(0, 300), "\", replay decided \"", got.substr(0, 300), "\""));
      }
    } else if (first.ok()) {
      ++*replayed;
    }
  }
  return first;
}

absl::Status Replay(const Config& config, const std::vector<JournalEntry>& journal,
                    absl::string_view final_snapshot, int64_t* replayed) {
  ASSIGN_OR_RETURN(auto searcher, NewSearcher(config));
  RETURN_IF_ERROR(ReplayInto(searcher.get(), journal, replayed));
  if (searcher->Snapshot() != final_snapshot) {
    return absl::FailedPreconditionError(
        absl::StrCat("every one of the ", *replayed,
                     " decisions replays identically, but the replayed searcher's "
                     "state differs from the saved one"));
  }
  return absl::OkStatus();
}

}  // namespace rung::search
