#include "server/schedule/trial_table.h"

#include <cstring>

#include "common/log.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace rung {

bool TrialTable::Has(int index) const {
  if (index < 1 || index > size()) return false;
  const Slot& s = slots_[static_cast<size_t>(index - 1)];
  return s.live != nullptr || !s.record.empty();
}

v1::Trial* TrialTable::Get(int index) {
  if (!Has(index)) return nullptr;
  Slot& s = slots_[static_cast<size_t>(index - 1)];
  if (s.live == nullptr) {
    s.live = std::make_unique<v1::Trial>();
    if (!s.live->ParseFromString(s.record)) {
      Log(LogLevel::kError, "a packed trial record does not parse");  // cannot happen: we wrote it
    }
    s.record.clear();
    s.record.shrink_to_fit();
  }
  return s.live.get();
}

void TrialTable::Put(v1::Trial t) {
  const size_t i = static_cast<size_t>(t.index() - 1);
  if (slots_.size() <= i) slots_.resize(i + 1);
  Slot& s = slots_[i];
  s.record.clear();
  s.record.shrink_to_fit();
  if (s.live == nullptr) s.live = std::make_unique<v1::Trial>();
  *s.live = std::move(t);
}

void TrialTable::PutPacked(int index, std::string record, const Summary& summary) {
  const size_t i = static_cast<size_t>(index - 1);
  if (slots_.size() <= i) slots_.resize(i + 1);
  Slot& s = slots_[i];
  s.live.reset();
  s.summary = summary;
  s.record = std::move(record);
}

bool TrialTable::ReadSummary(absl::string_view record, int* index, Summary* s) const {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(record.data()),
                                            static_cast<int>(record.size()));
  *s = Summary();
  *index = 0;
  bool first_result = true;
  auto read_double = [&](double* d) {
    uint64_t bits;
    if (!in.ReadLittleEndian64(&bits)) return false;
    memcpy(d, &bits, sizeof(*d));
    return true;
  };
  // The numbers of the fields of v1::Trial it reads (types.proto).
  enum : int {
    kIndex = 3,
    kState = 5,
    kResult = 9,
    kHasResult = 10,
    kLastMetrics = 19,
    kFailures = 22,
    kResults = 30,
    kInfeasible = 31
  };
  while (uint32_t tag = in.ReadTag()) {
    const int field = static_cast<int>(WireFormatLite::GetTagFieldNumber(tag));
    const auto type = WireFormatLite::GetTagWireType(tag);
    uint32_t u32;
    uint64_t u64;
    if (type == WireFormatLite::WIRETYPE_VARINT &&
        (field == kIndex || field == kState || field == kHasResult || field == kFailures)) {
      if (!in.ReadVarint64(&u64)) return false;
      if (field == kIndex) *index = static_cast<int>(u64);
      if (field == kState) s->state = static_cast<v1::TrialState>(u64);
      if (field == kHasResult) s->has_result = u64 != 0;
      if (field == kFailures) s->failures = static_cast<int>(u64);
    } else if (type == WireFormatLite::WIRETYPE_FIXED64 && field == kResult) {
      double d;
      if (!read_double(&d)) return false;
      if (first_result) s->result = d;  // results(0) wins when there are several objectives
    } else if (field == kResults && (type == WireFormatLite::WIRETYPE_FIXED64 ||
                                     type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
      uint32_t size = 8;
      if (type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED && !in.ReadVarint32(&size))
        return false;
      for (uint32_t k = 0; k < size / 8; ++k) {
        double d;
        if (!read_double(&d)) return false;
        if (first_result) s->result = d;
        first_result = false;
      }
    } else if (type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED && field == kInfeasible) {
      if (!in.ReadVarint32(&u32) || !in.Skip(static_cast<int>(u32))) return false;
      s->feasible = u32 == 0;
    } else if (type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED && field == kLastMetrics) {
      // A map entry: key = 1 (string), value = 2 (double).
      if (!in.ReadVarint32(&u32)) return false;
      const auto limit = in.PushLimit(static_cast<int>(u32));
      std::string key;
      double value = 0;
      while (uint32_t t = in.ReadTag()) {
        if (t == WireFormatLite::MakeTag(1, WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
          if (!WireFormatLite::ReadString(&in, &key)) return false;
        } else if (t == WireFormatLite::MakeTag(2, WireFormatLite::WIRETYPE_FIXED64)) {
          if (!read_double(&value)) return false;
        } else if (!WireFormatLite::SkipField(&in, t)) {
          return false;
        }
      }
      in.PopLimit(limit);
      if (key == objective_) {
        s->has_last = true;
        s->last = value;
      }
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage() && *index > 0;
}

void TrialTable::Pack(int index) {
  if (index < 1 || index > size()) return;
  Slot& s = slots_[static_cast<size_t>(index - 1)];
  const v1::TrialState st = s.live == nullptr ? v1::TRIAL_STATE_UNSPECIFIED : s.live->state();
  if (st != v1::TRIAL_COMPLETED && st != v1::TRIAL_STOPPED && st != v1::TRIAL_FAILED) return;
  s.summary = Summarize(*s.live);
  s.record = s.live->SerializeAsString();
  s.record.shrink_to_fit();
  s.live.reset();
}

bool TrialTable::Packed(int index) const {
  return Has(index) && slots_[static_cast<size_t>(index - 1)].live == nullptr;
}

TrialTable::Summary TrialTable::Summarize(const v1::Trial& t) const {
  Summary s;
  s.state = t.state();
  s.failures = t.failures();
  s.feasible = t.infeasible().empty();
  s.has_result = t.has_result();
  s.result = t.result();
  if (t.results_size() > 0) s.result = t.results(0);
  auto it = t.last_metrics().find(objective_);
  s.has_last = it != t.last_metrics().end();
  if (s.has_last) s.last = it->second;
  return s;
}

TrialTable::Summary TrialTable::SummaryOf(int index) const {
  const Slot& s = slots_[static_cast<size_t>(index - 1)];
  return s.live != nullptr ? Summarize(*s.live) : s.summary;
}

void TrialTable::ForEach(const std::function<void(const v1::Trial&)>& f) const {
  v1::Trial scratch;
  for (const Slot& s : slots_) {
    if (s.live != nullptr) {
      f(*s.live);
    } else if (!s.record.empty() && scratch.ParseFromString(s.record)) {
      f(scratch);
    }
  }
}

const v1::Trial* TrialTable::Live(int index) const {
  return index >= 1 && index <= size() ? slots_[static_cast<size_t>(index - 1)].live.get()
                                       : nullptr;
}

v1::Trial TrialTable::Copy(int index) const {
  const Slot& s = slots_[static_cast<size_t>(index - 1)];
  if (s.live != nullptr) return *s.live;
  v1::Trial t;
  t.ParseFromString(s.record);
  return t;
}

}  // namespace rung
