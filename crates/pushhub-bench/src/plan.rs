//! Who should receive which message in a scenario.
//!
//! Workers and the publisher never talk to each other during a run; they both
//! derive the routing from the same [`Plan`], which is what makes per-client
//! loss and duplicate accounting possible.

use serde::{Deserialize, Serialize};

/// The kind of load a run applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Connections only, no messages: measures memory per connection.
    Idle,
    /// Every message goes to every connection of the app (`to:"*"`).
    Broadcast,
    /// Message `i` goes to user `u{i % conns}` only.
    Unicast,
    /// Broadcasts; clients disconnect, miss some, and resume with their cursor.
    Resume,
}

impl Mode {
    /// Lower-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Broadcast => "broadcast",
            Mode::Unicast => "unicast",
            Mode::Resume => "resume",
        }
    }
}

/// Routing of `messages` messages over `conns` clients, one client per user `u0..u{conns-1}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What kind of traffic.
    pub mode: Mode,
    /// Number of clients (= distinct users) in the whole run, over all workers.
    pub conns: u64,
    /// Number of messages the publisher sends.
    pub messages: u64,
}

impl Plan {
    /// The user index message `seq` is addressed to, or `None` for a broadcast
    /// (resume publishes broadcasts too).
    pub fn recipient(&self, seq: u64) -> Option<u64> {
        match self.mode {
            Mode::Unicast if self.conns > 0 => Some(seq % self.conns),
            _ => None,
        }
    }

    /// Whether user `user` must receive message `seq` exactly once.
    pub fn expects(&self, user: u64, seq: u64) -> bool {
        if seq >= self.messages || user >= self.conns {
            return false;
        }
        match self.mode {
            Mode::Idle => false,
            Mode::Broadcast | Mode::Resume => true,
            Mode::Unicast => seq % self.conns == user,
        }
    }

    /// How many distinct messages user `user` must receive.
    pub fn expected_for_user(&self, user: u64) -> u64 {
        if user >= self.conns {
            return 0;
        }
        match self.mode {
            Mode::Idle => 0,
            Mode::Broadcast | Mode::Resume => self.messages,
            Mode::Unicast => {
                self.messages / self.conns + u64::from(user < self.messages % self.conns)
            }
        }
    }

    /// Deliveries expected over all `conns` clients (N*M for broadcast, M for unicast).
    pub fn expected_total(&self) -> u64 {
        match self.mode {
            Mode::Idle => 0,
            Mode::Broadcast | Mode::Resume => self.conns * self.messages,
            Mode::Unicast if self.conns > 0 => self.messages,
            Mode::Unicast => 0,
        }
    }
}

/// The protocol user name of user index `k`.
pub fn user_name(k: u64) -> String {
    format!("u{k}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_expectations_sum_to_messages() {
        let plan = Plan {
            mode: Mode::Unicast,
            conns: 7,
            messages: 23,
        };
        let sum: u64 = (0..7).map(|u| plan.expected_for_user(u)).sum();
        assert_eq!(sum, 23);
        for seq in 0..23 {
            let to = plan.recipient(seq).unwrap();
            assert!(plan.expects(to, seq));
            assert_eq!((0..7).filter(|&u| plan.expects(u, seq)).count(), 1);
        }
        assert_eq!(plan.expected_total(), 23);
    }

    #[test]
    fn broadcast_expects_everything() {
        let plan = Plan {
            mode: Mode::Broadcast,
            conns: 4,
            messages: 5,
        };
        assert_eq!(plan.expected_total(), 20);
        assert_eq!(plan.expected_for_user(3), 5);
        assert!(plan.expects(0, 4));
        assert!(!plan.expects(0, 5));
        assert_eq!(plan.recipient(2), None);
    }
}
