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
//   "checkpoint"         `actions` holds the searcher's snapshot after every earlier entry: a
//                        replay may begin here, and checks it when it passes
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

// Restores `searcher` from the snapshot of journal[0] ("start" or "checkpoint") and takes it
// through every later entry. OK when every entry gives the recorded actions and every later
// checkpoint equals the replayed state; otherwise FAILED_PRECONDITION naming the first entry
// that differs, what was recorded and what the replay decided. Either way it goes on to the
// end, so that the searcher has handled every event (INVALID_ARGUMENT, and it stops, only
// when an entry cannot be read at all). `replayed` gets the number of entries that matched.
absl::Status ReplayInto(Searcher* searcher, const std::vector<JournalEntry>& journal,
                        int64_t* replayed);

// ReplayInto a fresh searcher made from `config`, which must then be in `final_snapshot` (the
// live searcher's state after the last entry: state that no decision has shown yet, such as
// the generator's position, must match too).
absl::Status Replay(const Config& config, const std::vector<JournalEntry>& journal,
                    absl::string_view final_snapshot, int64_t* replayed);

}  // namespace rung::search

#endif  // RUNG_SERVER_SEARCH_JOURNAL_H_
