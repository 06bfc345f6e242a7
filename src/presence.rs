//! Presence: who is online in a `channel:` channel, the same on every node
//! of the deployment. Work in progress (issue 23): [`view`], the merged
//! view and its rules, is the part built so far; nothing uses it yet.

pub mod view;
