//! What every resuming client of the soak was sent and what it received.
//!
//! The publisher numbers every push it makes with one global sequence (`s` in the
//! message's data). A push answered 2xx is *owed*: to every soak user for a broadcast,
//! to its one user for a unicast. Each client records the sequence numbers it receives
//! in a bit set, so at the end `lost` (owed, never received) and `duplicated` (received
//! more than once) are exact, over a 30-minute run, in a few bytes per message.

use std::sync::Mutex;

/// A set of sequence numbers, one bit each.
#[derive(Debug, Default, Clone)]
pub struct SeqBits {
    words: Vec<u64>,
}

impl SeqBits {
    /// Sets `seq`; returns false when it was set already.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = position(seq);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        let (word, bit) = position(seq);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }
}

fn position(seq: u64) -> (usize, u64) {
    (
        usize::try_from(seq / 64).unwrap_or(usize::MAX),
        1 << (seq % 64),
    )
}

/// One user's side: what it was owed and what it got.
#[derive(Debug, Default)]
struct UserBook {
    owed_unicasts: Vec<u64>,
    received: SeqBits,
    duplicated: u64,
}

/// Owed and received messages of every soak user, shared by the publisher and the clients.
#[derive(Debug)]
pub struct Ledger {
    users: Vec<Mutex<UserBook>>,
    broadcasts: Mutex<Vec<u64>>,
}

/// The ledger's verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LedgerTally {
    /// Deliveries owed over all users (a broadcast counts once per user).
    pub owed: u64,
    /// Owed deliveries that arrived.
    pub received: u64,
    /// Owed deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a message the user had already received.
    pub duplicated: u64,
}

impl Ledger {
    /// A ledger for users `0..users`.
    pub fn new(users: usize) -> Self {
        Self {
            users: (0..users).map(|_| Mutex::default()).collect(),
            broadcasts: Mutex::default(),
        }
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// The server accepted broadcast `seq`: every user is owed it.
    pub fn owe_broadcast(&self, seq: u64) {
        lock(&self.broadcasts).push(seq);
    }

    /// The server accepted unicast `seq` to `user`.
    pub fn owe_unicast(&self, user: usize, seq: u64) {
        if let Some(book) = self.users.get(user) {
            lock(book).owed_unicasts.push(seq);
        }
    }

    /// `user` received `seq`; returns false when it was a duplicate.
    pub fn receive(&self, user: usize, seq: u64) -> bool {
        let Some(book) = self.users.get(user) else {
            return false;
        };
        let mut book = lock(book);
        let fresh = book.received.insert(seq);
        if !fresh {
            book.duplicated += 1;
        }
        fresh
    }

    /// Whether every user has received everything owed so far.
    pub fn settled(&self) -> bool {
        self.tally().lost == 0
    }

    /// Counts owed, received, lost and duplicated over every user.
    pub fn tally(&self) -> LedgerTally {
        let broadcasts = lock(&self.broadcasts).clone();
        let mut t = LedgerTally::default();
        for book in &self.users {
            let book = lock(book);
            for &seq in broadcasts.iter().chain(&book.owed_unicasts) {
                t.owed += 1;
                if book.received.contains(seq) {
                    t.received += 1;
                } else {
                    t.lost += 1;
                }
            }
            t.duplicated += book.duplicated;
        }
        t
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_remember_what_was_set() {
        let mut bits = SeqBits::default();
        assert!(bits.insert(0));
        assert!(bits.insert(130));
        assert!(!bits.insert(130));
        assert!(bits.contains(0) && bits.contains(130));
        assert!(!bits.contains(1) && !bits.contains(10_000));
    }

    #[test]
    fn tally_counts_lost_and_duplicated_per_user() {
        let ledger = Ledger::new(2);
        ledger.owe_broadcast(0);
        ledger.owe_unicast(1, 1);
        ledger.owe_broadcast(2);
        assert!(ledger.receive(0, 0));
        assert!(ledger.receive(0, 2));
        assert!(!ledger.receive(0, 2));
        assert!(ledger.receive(1, 1));
        assert!(ledger.receive(1, 2));
        let t = ledger.tally();
        assert_eq!(
            t,
            LedgerTally {
                owed: 5,
                received: 4,
                lost: 1,
                duplicated: 1
            }
        );
        assert!(!ledger.settled());
        ledger.receive(1, 0);
        assert!(ledger.settled());
    }
}
