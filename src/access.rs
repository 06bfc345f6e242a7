//! Authorization rules: who may subscribe to which channel, and which
//! events cut a subscription off. Pure domain; the facts about members,
//! bans and deleted channels come from the [`crate::projection`].
//!
//! The rules (README "Authorization"):
//! - `global`: every authenticated user.
//! - `user:{id}`: only the user `id` (the token's `sub`).
//! - `channel:{id}`: the token's `channels` grant (a list, or `"*"`) or a
//!   membership (`member_joined` not yet undone by `member_left`,
//!   `user_kicked` or `user_banned`), unless the user is banned from it or
//!   the channel is deleted: those deny whatever the token says.
//! - `user_unbanned` lifts the ban only; it does not restore a membership.
//!   After an unban the user needs a grant or a new `member_joined`.
//! - A deleted channel stays deleted: nobody subscribes to it again.
//! - A live subscription that reaches a ban, kick or leave of its own user,
//!   or the channel's deletion, delivers that event and is then cut with the
//!   matching reason.
//! - A replay follows the user's standing at each event ([`Standing::after`],
//!   [`Standing::sees`]): events from a time when the user could not see the
//!   channel (banned, or a non-member without a grant) are withheld; events
//!   about the user's own standing ([`concerns`]) are delivered; the replay
//!   goes on past an unban and a rejoin. It is cut only at the ban, kick,
//!   leave or deletion that ends the user's current standing.

use crate::channel::{Channel, Id};
use crate::event::EventData;
use crate::token::Claims;

/// What the projection knows about one user in one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub member: bool,
    pub banned: bool,
    pub channel_deleted: bool,
}

impl Standing {
    /// The standing after `data`, an event of the channel, for `user`: the
    /// projection's fold, for one user.
    pub fn after(self, user: Id, data: &EventData) -> Standing {
        let about = |u: Option<Id>| u == Some(user);
        match data {
            EventData::MemberJoined(d) if d.user_id == user => Standing {
                member: true,
                ..self
            },
            EventData::MemberLeft(d) if d.user_id == user => Standing {
                member: false,
                ..self
            },
            EventData::UserKicked(d) if about(d.user_id) => Standing {
                member: false,
                ..self
            },
            EventData::UserBanned(d) if about(d.user_id) => Standing {
                member: false,
                banned: true,
                ..self
            },
            EventData::UserUnbanned(d) if about(d.user_id) => Standing {
                banned: false,
                ..self
            },
            EventData::ChannelDeleted(_) => Standing {
                channel_deleted: true,
                ..self
            },
            _ => self,
        }
    }

    /// Whether the channel's events are for the user with this standing,
    /// `granted`: whether the token grants the channel.
    pub fn sees(self, granted: bool) -> bool {
        !self.channel_deleted && !self.banned && (self.member || granted)
    }
}

/// Whether `data` is about `user`'s own standing in its channel (their
/// join, leave, kick, ban or unban, or the channel's deletion): such an
/// event is delivered to them whatever their standing.
pub fn concerns(user: Id, data: &EventData) -> bool {
    match data {
        EventData::MemberJoined(d) | EventData::MemberLeft(d) => d.user_id == user,
        EventData::UserKicked(d) => d.user_id == Some(user),
        EventData::UserBanned(d) | EventData::UserUnbanned(d) => d.user_id == Some(user),
        EventData::ChannelDeleted(_) => true,
        _ => false,
    }
}

/// Why a subscription is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("banned from this channel")]
    Banned,
    #[error("this channel was deleted")]
    ChannelDeleted,
    #[error("not a member of this channel and the token does not grant it")]
    NotMember,
    #[error("a user channel is only for its own user")]
    OtherUser,
}

/// Decides a subscription. `standing` is consulted for chat channels only.
pub fn may_subscribe(
    claims: &Claims,
    channel: Channel,
    standing: impl FnOnce(Id) -> Standing,
) -> Result<(), Denied> {
    match channel {
        Channel::Global => Ok(()),
        Channel::User(id) if id == claims.sub => Ok(()),
        Channel::User(_) => Err(Denied::OtherUser),
        Channel::Chat(id) => {
            let standing = standing(id);
            if standing.channel_deleted {
                Err(Denied::ChannelDeleted)
            } else if standing.banned {
                Err(Denied::Banned)
            } else if standing.member || claims.channels.allows(id) {
                Ok(())
            } else {
                Err(Denied::NotMember)
            }
        }
    }
}

/// Why a subscription was ended by the server or the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Requested,
    Banned,
    Kicked,
    Left,
    ChannelDeleted,
    /// The connection's new token (a `refresh`) no longer allows it.
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Requested => "requested",
            EndReason::Banned => "banned",
            EndReason::Kicked => "kicked",
            EndReason::Left => "left",
            EndReason::ChannelDeleted => "channel_deleted",
            EndReason::Revoked => "revoked",
        }
    }
}

/// Whom an event cuts off its channel, if anyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// `None`: every subscriber (the channel was deleted).
    pub user: Option<Id>,
    pub reason: EndReason,
}

impl Cut {
    pub fn applies_to(&self, user: Id) -> bool {
        self.user.is_none_or(|u| u == user)
    }
}

/// The cut an event copy on `channel` makes; only chat channel copies cut.
pub fn cut(channel: Channel, data: &EventData) -> Option<Cut> {
    if !matches!(channel, Channel::Chat(_)) {
        return None;
    }
    let user_cut = |user: Id, reason| {
        Some(Cut {
            user: Some(user),
            reason,
        })
    };
    match data {
        EventData::UserBanned(d) => user_cut(d.user_id?, EndReason::Banned),
        EventData::UserKicked(d) => user_cut(d.user_id?, EndReason::Kicked),
        EventData::MemberLeft(d) => user_cut(d.user_id, EndReason::Left),
        EventData::ChannelDeleted(_) => Some(Cut {
            user: None,
            reason: EndReason::ChannelDeleted,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BanChange, ChannelDeleted, Member};
    use crate::token::Grant;

    fn claims(grant: Grant) -> Claims {
        Claims {
            sub: Id::new_v4(),
            exp: i64::MAX,
            name: None,
            channels: grant,
            roles: vec![],
        }
    }

    #[test]
    fn user_and_global_channels() {
        let c = claims(Grant::None);
        let none = |_| Standing::default();
        assert_eq!(may_subscribe(&c, Channel::Global, none), Ok(()));
        assert_eq!(may_subscribe(&c, Channel::User(c.sub), none), Ok(()));
        assert_eq!(
            may_subscribe(&c, Channel::User(Id::new_v4()), none),
            Err(Denied::OtherUser)
        );
    }

    #[test]
    fn grant_or_membership_unless_banned_or_deleted() {
        let ch = Id::new_v4();
        let granted = claims(Grant::Some(vec![ch]));
        let everything = claims(Grant::All);
        let nothing = claims(Grant::None);
        let s = |member, banned, channel_deleted| {
            move |_| Standing {
                member,
                banned,
                channel_deleted,
            }
        };
        let chat = Channel::Chat(ch);
        assert_eq!(
            may_subscribe(&granted, chat, s(false, false, false)),
            Ok(())
        );
        assert_eq!(
            may_subscribe(&everything, chat, s(false, false, false)),
            Ok(())
        );
        assert_eq!(may_subscribe(&nothing, chat, s(true, false, false)), Ok(()));
        assert_eq!(
            may_subscribe(&nothing, chat, s(false, false, false)),
            Err(Denied::NotMember)
        );
        assert_eq!(
            may_subscribe(&everything, chat, s(true, true, false)),
            Err(Denied::Banned)
        );
        assert_eq!(
            may_subscribe(&everything, chat, s(true, false, true)),
            Err(Denied::ChannelDeleted)
        );
    }

    #[test]
    fn cuts() {
        let ch = Id::new_v4();
        let u = Id::new_v4();
        let other = Id::new_v4();
        let ban = EventData::UserBanned(BanChange {
            channel_id: ch,
            user_id: Some(u),
            motive: "x".into(),
        });
        let c = cut(Channel::Chat(ch), &ban).unwrap();
        assert!(c.applies_to(u) && !c.applies_to(other));
        assert_eq!(c.reason, EndReason::Banned);
        assert_eq!(cut(Channel::User(u), &ban), None);
        let left = EventData::MemberLeft(Member {
            channel_id: ch,
            user_id: u,
            username: None,
        });
        assert_eq!(
            cut(Channel::Chat(ch), &left).unwrap().reason,
            EndReason::Left
        );
        let gone = EventData::ChannelDeleted(ChannelDeleted { channel_id: ch });
        let c = cut(Channel::Chat(ch), &gone).unwrap();
        assert!(c.applies_to(u) && c.applies_to(other));
    }
}
