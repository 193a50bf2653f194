//! Retention (`--retain-days`, `--retain-room`): messages older than the server keeps them are
//! deleted as their authors would delete them, so that "deleted means gone" holds for them too:
//! their text, every version and their search entry leave the file, and each `delete` event
//! goes to the streams that could see the message, so open pages drop it.
//!
//! The work is done off the commit path: a look every `--retention-interval`, each room's oldest
//! messages read a few at a time and erased in small batches, each one request to the writer
//! with the writer free for everyone else between two.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Error;
use crate::eventlog::EventLog;

/// Messages read, and erased in one writer request, at a time.
const BATCH: u32 = 100;

/// The pause between two batches: the writer's other work goes first.
const PAUSE: Duration = Duration::from_millis(20);

/// How long each room's messages are kept.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Days for every room not named in `rooms`; `None` keeps them for good.
    pub days: Option<u32>,
    /// Days for the rooms named, by name; `None` keeps one for good.
    pub rooms: HashMap<String, Option<u32>>,
}

impl Policy {
    /// From the flags: `0` days is for good.
    pub fn new(days: u32, rooms: &[(String, u32)]) -> Self {
        let days_of = |days: u32| (days > 0).then_some(days);
        Self {
            days: days_of(days),
            rooms: rooms
                .iter()
                .map(|(room, days)| (room.clone(), days_of(*days)))
                .collect(),
        }
    }

    /// Whether any message is ever deleted.
    pub fn deletes(&self) -> bool {
        self.days.is_some() || self.rooms.values().any(Option::is_some)
    }

    /// The days `room`'s messages are kept, `None` for good.
    pub fn days_of(&self, room: &str) -> Option<u32> {
        self.rooms.get(room).copied().unwrap_or(self.days)
    }
}

/// Looks for expired messages every `every` until `stop`, deleting them as `policy` says.
pub async fn run(log: EventLog, policy: Policy, every: Duration, stop: CancellationToken) {
    if !policy.deletes() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match expire(&log, &policy, &stop).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "messages past their time deleted"),
            Err(error) => tracing::warn!(%error, "retention: cannot delete expired messages now"),
        }
    }
}

/// One look: every room's expired messages deleted, a batch at a time; how many.
async fn expire(log: &EventLog, policy: &Policy, stop: &CancellationToken) -> Result<usize, Error> {
    let mut deleted = 0;
    for (room, name) in log.store.room_names().await? {
        let Some(days) = policy.days_of(&name) else {
            continue;
        };
        loop {
            if stop.is_cancelled() {
                return Ok(deleted);
            }
            let expired = log.store.expired(room, days, BATCH).await?;
            let full = expired.len() == BATCH as usize;
            if expired.is_empty() {
                break;
            }
            deleted += log.writer.expire(expired).await?;
            if !full {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_named_has_its_own_days_and_zero_is_for_good() {
        let policy = Policy::new(30, &[("keep".into(), 0), ("short".into(), 7)]);
        assert_eq!(policy.days_of("general"), Some(30));
        assert_eq!(policy.days_of("keep"), None);
        assert_eq!(policy.days_of("short"), Some(7));
        assert!(policy.deletes());
        let forever = Policy::new(0, &[("keep".into(), 0)]);
        assert_eq!(forever.days_of("general"), None);
        assert!(!forever.deletes());
        assert!(Policy::new(0, &[("short".into(), 7)]).deletes());
    }
}
