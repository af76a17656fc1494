//! The text `pushhub store check` and `pushhub store repair` print: what was found, what
//! was recovered and lost, and what to do next.

use std::fmt::Write as _;
use std::path::Path;

use super::integrity::{held, Contents, Verdict};
use super::salvage::{Repair, Salvage, MAX_LISTED_IDS};
use super::state_file::{ExpectedState, STATE_FILE_NAME};
use super::FILE_NAME;

/// The report of a check of the store in `data_dir`.
pub fn check(data_dir: &Path, verdict: &Verdict) -> String {
    let path = data_dir.join(FILE_NAME);
    let path = path.display();
    match verdict {
        Verdict::Fresh => format!("{path}: no store yet (a first start creates it)\n"),
        Verdict::Sound(contents) => {
            let mut text = format!("{path}: ok, {}\n", contents_line(contents));
            if contents.rolls_back_last_commit {
                text.push_str(
                    "note: the last commit did not finish before a crash; redb rolls it back at the next start (it was never acknowledged)\n",
                );
            }
            text.push_str(&expected_line(contents.expected.as_ref()));
            text
        }
        Verdict::Damaged(damage) => {
            let mut text = format!("{path}: DAMAGED: {}\n", damage.problem);
            text.push_str(&expected_line(damage.expected.as_ref()));
            let dir = data_dir.display();
            let _ = writeln!(
                text,
                "pushhub serve refuses this store. Either run `pushhub store repair --data-dir {dir}` \
                 (salvages every readable timer and cron job into a new file, keeps the damaged one), \
                 or restore {FILE_NAME} and {STATE_FILE_NAME} from a backup."
            );
            text
        }
    }
}

/// The report of a repair of the store in `data_dir`.
pub fn repair(data_dir: &Path, repair: &Repair) -> String {
    match repair {
        Repair::NotNeeded(verdict) => {
            let mut text = check(data_dir, verdict);
            text.push_str("nothing to repair; nothing was changed\n");
            text
        }
        Repair::Repaired(salvage) => salvaged(data_dir, salvage),
    }
}

fn salvaged(data_dir: &Path, salvage: &Salvage) -> String {
    let path = data_dir.join(FILE_NAME);
    let mut text = format!("{} was damaged: {}\n", path.display(), salvage.problem);
    match &salvage.kept {
        Some(kept) => {
            let _ = writeln!(text, "kept the damaged file as {}", kept.display());
        }
        None => text.push_str("there was no file to keep\n"),
    }
    let _ = writeln!(
        text,
        "recovered: {} timer(s) ({} pending or running), {} cron job(s)",
        salvage.timers, salvage.unfinished, salvage.jobs
    );
    if let Some(state) = &salvage.expected {
        let when = if state.open {
            "when the server last opened it"
        } else {
            "at its last clean close"
        };
        let _ = writeln!(
            text,
            "expected ({STATE_FILE_NAME}, {when}): {}",
            held(state)
        );
    }
    let _ = writeln!(text, "lost timers: {}", ids(&salvage.lost_timers));
    let jobs: Vec<String> = salvage
        .lost_jobs
        .iter()
        .map(|(app, name)| format!("{app}/{name}"))
        .collect();
    let _ = writeln!(
        text,
        "lost cron jobs: {}",
        if jobs.is_empty() {
            "none known".to_owned()
        } else {
            jobs.join(", ")
        }
    );
    for unreadable in &salvage.unreadable {
        let _ = writeln!(text, "could not read: {unreadable}");
    }
    let _ = writeln!(
        text,
        "{} now holds what was recovered; `pushhub serve` accepts it",
        path.display()
    );
    text
}

fn contents_line(contents: &Contents) -> String {
    format!(
        "{} timer(s) ({} pending or running), {} cron job(s)",
        contents.timers, contents.unfinished, contents.jobs
    )
}

fn expected_line(expected: Option<&ExpectedState>) -> String {
    match expected {
        None => format!("{STATE_FILE_NAME}: none (written at the next start)\n"),
        Some(state) if state.open => format!(
            "{STATE_FILE_NAME}: the server opened the store with {} and has not closed it cleanly since\n",
            held(state)
        ),
        Some(state) => format!(
            "{STATE_FILE_NAME}: closed cleanly holding {}\n",
            held(state)
        ),
    }
}

/// `none known`, `3, 7, 12`, or the first [`MAX_LISTED_IDS`] and a count.
fn ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "none known".to_owned();
    }
    let listed: Vec<String> = ids
        .iter()
        .take(MAX_LISTED_IDS)
        .map(u64::to_string)
        .collect();
    let more = ids.len().saturating_sub(MAX_LISTED_IDS);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{} (ids {}{tail})", ids.len(), listed.join(", "))
}
