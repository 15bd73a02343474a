//! A conversation view: what a user sees after applying a room's messages in order.
//!
//! The rules of draft-ietf-mimi-content-08: a message with `replaces` edits (or, with a
//! `NullPart`, deletes) the message whose **first** version it names, and only its sender may
//! do so; a part with disposition `reaction` reacts to `inReplyTo`, and a reaction `NullPart`
//! that `replaces` an earlier reaction withdraws it. References to unknown messages are kept
//! aside (counted in [`Timeline::unresolved`]) rather than applied to the wrong message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Disposition, MessageId, MimiContent, PartBody};
use crate::render::{part_text, short_id};

/// One message as currently seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The ID of its first version.
    pub id: MessageId,
    /// Sender user URI.
    pub sender: String,
    /// Current text (plain rendering of the latest version; empty once deleted).
    pub text: String,
    /// The message it replies to, if any.
    pub in_reply_to: Option<MessageId>,
    /// Edited at least once.
    pub edited: bool,
    /// Deleted.
    pub deleted: bool,
    /// Reactions: emoji → users.
    pub reactions: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Clone)]
struct Reaction {
    target: MessageId,
    emoji: String,
    sender: String,
}

/// The view of one room.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    entries: Vec<Entry>,
    index: HashMap<MessageId, usize>,
    reactions: HashMap<MessageId, Reaction>,
    unresolved: usize,
}

impl Timeline {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry whose first version is `id`.
    pub fn get(&self, id: &MessageId) -> Option<&Entry> {
        self.index.get(id).map(|&i| &self.entries[i])
    }

    /// References that named an unknown message or a message of another sender.
    pub fn unresolved(&self) -> usize {
        self.unresolved
    }

    /// Applies one message (`id` is its own ID, `sender` the authenticated sender).
    pub fn apply(&mut self, sender: &str, id: MessageId, c: &MimiContent) {
        let null = matches!(c.nested_part.body, PartBody::Null);
        if c.nested_part.disposition == Disposition::Reaction {
            if let (Some(old), true) = (c.replaces, null) {
                // Un-react: only the reaction's own sender may withdraw it.
                match self.reactions.get(&old) {
                    Some(r) if r.sender == sender => {
                        let r = self
                            .reactions
                            .remove(&old)
                            .unwrap_or_else(|| unreachable!());
                        if let Some(&i) = self.index.get(&r.target) {
                            let set = self.entries[i]
                                .reactions
                                .entry(r.emoji.clone())
                                .or_default();
                            set.remove(sender);
                            if set.is_empty() {
                                self.entries[i].reactions.remove(&r.emoji);
                            }
                        }
                    }
                    _ => self.unresolved += 1,
                }
                return;
            }
            let Some(target) = c.in_reply_to.filter(|t| self.index.contains_key(t)) else {
                self.unresolved += 1;
                return;
            };
            let emoji = part_text(&c.nested_part);
            let i = self.index[&target];
            self.entries[i]
                .reactions
                .entry(emoji.clone())
                .or_default()
                .insert(sender.to_owned());
            self.reactions.insert(
                id,
                Reaction {
                    target,
                    emoji,
                    sender: sender.to_owned(),
                },
            );
            return;
        }
        if let Some(first) = c.replaces {
            match self.index.get(&first) {
                Some(&i) if self.entries[i].sender == sender => {
                    let e = &mut self.entries[i];
                    if null {
                        e.deleted = true;
                        e.text.clear();
                        e.reactions.clear();
                    } else if !e.deleted {
                        e.text = part_text(&c.nested_part);
                        e.edited = true;
                    }
                }
                _ => self.unresolved += 1,
            }
            return;
        }
        if self.index.contains_key(&id) {
            return; // the same message twice
        }
        self.index.insert(id, self.entries.len());
        self.entries.push(Entry {
            id,
            sender: sender.to_owned(),
            text: part_text(&c.nested_part),
            in_reply_to: c.in_reply_to,
            edited: false,
            deleted: false,
            reactions: BTreeMap::new(),
        });
    }

    /// One line per message: `sender: text (edited) [↪ reply-to] {emoji: n}`.
    pub fn render(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| {
                let mut s = format!("{}: ", e.sender);
                if e.deleted {
                    s.push_str("(deleted)");
                } else {
                    s.push_str(&e.text);
                    if e.edited {
                        s.push_str(" (edited)");
                    }
                }
                if let Some(p) = e.in_reply_to {
                    let to = self
                        .get(&p)
                        .map_or_else(|| short_id(&p), |t| t.sender.clone());
                    s.push_str(&format!(" [reply to {to}]"));
                }
                for (emoji, users) in &e.reactions {
                    s.push_str(&format!(
                        " {{{emoji} {}}}",
                        users.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder;

    const A: &str = "mimi://a.example/u/alice";
    const B: &str = "mimi://b.example/u/bob";
    const R: &str = "mimi://a.example/r/room";

    fn apply(t: &mut Timeline, sender: &str, b: builder::Builder) -> MessageId {
        let m = b.build().unwrap();
        let id = m.id().unwrap();
        t.apply(sender, id, m.content());
        id
    }

    #[test]
    fn edits_deletes_and_reactions() {
        let mut t = Timeline::new();
        let hi = apply(&mut t, A, builder::text(A, R, [1; 16], "hi"));
        let re = apply(&mut t, B, builder::reply(B, R, [2; 16], hi, "hello"));
        let like = apply(&mut t, B, builder::reaction(B, R, [3; 16], hi, "👍"));
        apply(&mut t, A, builder::reaction(A, R, [4; 16], hi, "👍"));
        apply(
            &mut t,
            A,
            builder::edit(A, R, [5; 16], hi, builder::plain_part("hi all")),
        );
        // Bob cannot edit alice's message, nor withdraw alice's reaction.
        apply(
            &mut t,
            B,
            builder::edit(B, R, [6; 16], hi, builder::plain_part("pwned")),
        );
        apply(&mut t, B, builder::unreact(B, R, [7; 16], like, hi));
        apply(&mut t, B, builder::delete(B, R, [8; 16], re));
        assert_eq!(
            t.render(),
            vec![
                format!("{A}: hi all (edited) {{👍 {A}}}"),
                format!("{B}: (deleted) [reply to {A}]")
            ]
        );
        assert_eq!(t.unresolved(), 1);
        assert!(t.get(&re).unwrap().deleted);
    }
}
