//! Close notes: what a backend asked to be told, by name, when one connection ends.
//!
//! MSwoole (seed 001) let a controller register, per connection, keys to clean up
//! (`fdAddCloseKey`) and controllers to notify (`fdAddController`) when it closed. pushhub
//! keeps such notes with the connection and names them in its `disconnect` lifecycle
//! event, so the backend that registered them does the cleanup. A change to the notes
//! comes from the API or from an RPC answer and may be carried to the node that holds
//! the connection, so this is plain data below the hub and the engines.

use serde::{Deserialize, Serialize};

/// Most controllers, and most close keys, one connection may hold.
pub const MAX_NOTES: usize = 32;

/// Longest controller name or close key, in bytes.
pub const MAX_NOTE_BYTES: usize = 256;

/// Why a change to close notes was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseNotesError {
    /// A name is empty, too long or holds a control character.
    #[error("{0}")]
    Invalid(String),
    /// The connection would hold more notes of one kind than allowed.
    #[error("a connection holds at most {MAX_NOTES} {0}")]
    Full(&'static str),
}

/// One change to a connection's notes: names added and removed (removal first, so a
/// change may replace a name by itself). Names already held are not added twice;
/// removing a name not held changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseNotesChange {
    /// Controllers to name in the `disconnect` event (MSwoole's `fdAddController`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_controllers: Vec<String>,
    /// Keys to name in the `disconnect` event (MSwoole's `fdAddCloseKey`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_close_keys: Vec<String>,
    /// Controllers no longer to name (MSwoole's `fdRemoveController`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_controllers: Vec<String>,
    /// Keys no longer to name (MSwoole's `fdRemoveCloseKey`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_close_keys: Vec<String>,
}

impl CloseNotesChange {
    /// Refuse a change no connection could take: a name that is empty, longer than
    /// [`MAX_NOTE_BYTES`] or holds a control character, or more than [`MAX_NOTES`]
    /// names in one list. Checked where the change enters, before it travels.
    pub fn check(&self) -> Result<(), CloseNotesError> {
        let lists = [
            ("add_controllers", &self.add_controllers),
            ("add_close_keys", &self.add_close_keys),
            ("remove_controllers", &self.remove_controllers),
            ("remove_close_keys", &self.remove_close_keys),
        ];
        for (field, names) in lists {
            if names.len() > MAX_NOTES {
                return Err(CloseNotesError::Invalid(format!(
                    "{field} names more than {MAX_NOTES}"
                )));
            }
            for name in names {
                if name.is_empty()
                    || name.len() > MAX_NOTE_BYTES
                    || name.chars().any(char::is_control)
                {
                    return Err(CloseNotesError::Invalid(format!(
                        "{field}: each name must be 1-{MAX_NOTE_BYTES} bytes without control characters"
                    )));
                }
            }
        }
        Ok(())
    }

    /// True when the change adds and removes nothing.
    pub fn is_empty(&self) -> bool {
        self.add_controllers.is_empty()
            && self.add_close_keys.is_empty()
            && self.remove_controllers.is_empty()
            && self.remove_close_keys.is_empty()
    }
}

/// The notes one connection holds, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseNotes {
    /// Controllers to name when it ends.
    pub controllers: Vec<String>,
    /// Keys to name when it ends.
    pub close_keys: Vec<String>,
}

impl CloseNotes {
    /// Apply `change` (checked with [`CloseNotesChange::check`]), or leave the notes as
    /// they were and say why not: a change that would overfill a list is refused whole.
    pub fn apply(&mut self, change: &CloseNotesChange) -> Result<(), CloseNotesError> {
        change.check()?;
        let controllers = edit(
            &self.controllers,
            &change.remove_controllers,
            &change.add_controllers,
        )
        .ok_or(CloseNotesError::Full("controllers"))?;
        let close_keys = edit(
            &self.close_keys,
            &change.remove_close_keys,
            &change.add_close_keys,
        )
        .ok_or(CloseNotesError::Full("close keys"))?;
        self.controllers = controllers;
        self.close_keys = close_keys;
        Ok(())
    }
}

/// `held` without `remove`, then with the names of `add` it lacks; `None` when that is
/// more than [`MAX_NOTES`].
fn edit(held: &[String], remove: &[String], add: &[String]) -> Option<Vec<String>> {
    let mut names: Vec<String> = held
        .iter()
        .filter(|name| !remove.contains(name))
        .cloned()
        .collect();
    for name in add {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    (names.len() <= MAX_NOTES).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn adds_once_removes_first_and_keeps_order() {
        let mut notes = CloseNotes::default();
        let change = CloseNotesChange {
            add_controllers: names(&["Live.User", "Live.Room", "Live.User"]),
            add_close_keys: names(&["room:42"]),
            ..Default::default()
        };
        notes.apply(&change).unwrap();
        assert_eq!(notes.controllers, ["Live.User", "Live.Room"]);
        let change = CloseNotesChange {
            remove_controllers: names(&["Live.User", "absent"]),
            remove_close_keys: names(&["room:42"]),
            add_close_keys: names(&["room:42"]),
            ..Default::default()
        };
        notes.apply(&change).unwrap();
        assert_eq!(notes.controllers, ["Live.Room"]);
        assert_eq!(notes.close_keys, ["room:42"]);
    }

    #[test]
    fn bounds_refuse_the_whole_change() {
        let mut notes = CloseNotes::default();
        let many: Vec<String> = (0..MAX_NOTES).map(|i| format!("k{i}")).collect();
        notes
            .apply(&CloseNotesChange {
                add_close_keys: many,
                ..Default::default()
            })
            .unwrap();
        let before = notes.clone();
        let more = CloseNotesChange {
            add_controllers: names(&["C"]),
            add_close_keys: names(&["one-too-many"]),
            ..Default::default()
        };
        assert_eq!(notes.apply(&more), Err(CloseNotesError::Full("close keys")));
        assert_eq!(notes, before);
        for bad in ["", "a\nb", &"x".repeat(MAX_NOTE_BYTES + 1)] {
            let change = CloseNotesChange {
                add_controllers: names(&[bad]),
                ..Default::default()
            };
            assert!(matches!(change.check(), Err(CloseNotesError::Invalid(_))));
        }
    }
}
