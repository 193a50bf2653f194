//! Who may read a room at a point of the log. Every account reads a public room; a private or
//! direct room is read by its members, from the event that let them in to the one that removed
//! them, inclusive. The hub routes live events by this, and the replay queries say the same in
//! SQL over the members' stints (`room_access`).

use std::collections::{HashMap, HashSet};

use super::{RoomId, UserId};

/// The members of every members-only room, as of the newest event published. A room absent
/// from it is public.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    rooms: HashMap<RoomId, HashSet<UserId>>,
}

impl Membership {
    /// From the members-only rooms and their current members (a room may have none).
    pub fn new(rooms: impl IntoIterator<Item = (RoomId, Vec<UserId>)>) -> Self {
        Self {
            rooms: rooms
                .into_iter()
                .map(|(room, members)| (room, members.into_iter().collect()))
                .collect(),
        }
    }

    /// Whether `user` may read `room` now.
    pub fn can_read(&self, room: RoomId, user: UserId) -> bool {
        self.rooms.get(&room).is_none_or(|members| members.contains(&user))
    }

    /// The members of a members-only room; `None` for a public one.
    pub fn members(&self, room: RoomId) -> Option<&HashSet<UserId>> {
        self.rooms.get(&room)
    }

    /// `users` may read `room` from now on; a room not known yet becomes members-only.
    pub fn admit(&mut self, room: RoomId, users: impl IntoIterator<Item = UserId>) {
        self.rooms.entry(room).or_default().extend(users);
    }

    /// `user` may no longer read `room`.
    pub fn dismiss(&mut self, room: RoomId, user: UserId) {
        if let Some(members) = self.rooms.get_mut(&room) {
            members.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_rooms_are_read_by_all_and_members_only_rooms_by_their_members() {
        let (general, secret) = (RoomId(1), RoomId(2));
        let (ada, bob) = (UserId(1), UserId(2));
        let mut membership = Membership::new([(secret, vec![ada])]);
        assert!(membership.can_read(general, bob));
        assert!(membership.can_read(secret, ada));
        assert!(!membership.can_read(secret, bob));
        membership.admit(secret, [bob]);
        assert!(membership.can_read(secret, bob));
        membership.dismiss(secret, ada);
        membership.dismiss(secret, bob);
        assert!(
            !membership.can_read(secret, ada),
            "a room without members stays members-only"
        );
        assert!(membership.members(general).is_none());
    }
}
