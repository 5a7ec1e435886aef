// The searcher's journal: every call that changed a searcher, as one line of text, with the
// actions it returned. rungd writes each line in the same WriteBatch as the state change it
// caused, so the journal holds exactly the decisions that were acknowledged. Replaying it
// through a fresh searcher made from the same Config must give the same actions line for
// line: that a controller killed at any moment and restored from its snapshots decided
// exactly what an uninterrupted searcher would have decided from the same events.
#ifndef RUNG_SERVER_SEARCH_JOURNAL_H_
#define RUNG_SERVER_SEARCH_JOURNAL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/search/searcher.h"

namespace rung::search {

// One journal entry. `call` is one of:
//   "start"              the searcher was made; `actions` holds its first snapshot
//   "propose"            Searcher::Propose() returned a job (its result comes back in a
//                        later "wanted" event)
//   an event's text      Searcher::Handle(event); `actions` is ActionsText of what it returned
struct JournalEntry {
  std::string call;
  std::string actions;
};

std::string EventText(const Event& event);
absl::StatusOr<Event> ParseEvent(absl::string_view text);
std::string ActionsText(const std::vector<Action>& actions);

// Replays `journal` through a fresh searcher made from `config` and restored from the
// journal's "start" snapshot. OK when every entry gives the recorded actions and the replay
// ends in `final_snapshot` (the snapshot saved with the last entry: state that no decision
// has shown yet, such as the generator's position, must match too); otherwise
// FAILED_PRECONDITION naming the first entry that differs, what was recorded and what the
// replay decided. `replayed` gets the number of entries that matched.
absl::Status Replay(const Config& config, const std::vector<JournalEntry>& journal,
                    absl::string_view final_snapshot, int64_t* replayed);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_JOURNAL_H_
