//! Retained messages, in a tree of topic levels so a wildcard subscription finds its matches without a scan.

use crate::message::Message;
use corvid_protocol::topic::matches;
use parking_lot::RwLock;
/// Topic levels are keyed with foldhash: seeded per process, much faster than SipHash on short keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::Instant;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

/// The retained messages of the broker.
#[derive(Default)]
pub(crate) struct Retained {
    root: RwLock<Node>,
    count: std::sync::atomic::AtomicUsize,
}

impl Retained {
    /// Stores `message` as the retained message of its topic, or deletes it when the payload is empty.
    /// Returns the message it replaced, if any.
    pub(crate) fn set(&self, message: Arc<Message>) -> Option<Arc<Message>> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut root = self.root.write();
        if message.payload.is_empty() {
            let levels: Vec<&str> = message.topic.split('/').collect();
            let old = remove(&mut root, &levels);
            if old.is_some() {
                self.count.fetch_sub(1, Relaxed);
            }
            return old;
        }
        let mut node = &mut *root;
        for level in message.topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.message.replace(message);
        if old.is_none() {
            self.count.fetch_add(1, Relaxed);
        }
        old
    }

    /// The retained message of `topic`.
    pub(crate) fn get(&self, topic: &str) -> Option<Arc<Message>> {
        let root = self.root.read();
        let mut node = &*root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.clone()
    }

    /// Every retained message whose topic matches `filter` and has not expired at `now`.
    pub(crate) fn matching(&self, filter: &str, now: Instant) -> Vec<Arc<Message>> {
        let root = self.root.read();
        let mut out = Vec::new();
        let levels: Vec<&str> = filter.split('/').collect();
        walk(&root, &levels, true, &mut out);
        out.retain(|m| !m.is_expired(now) && matches(filter, &m.topic));
        out
    }

    /// Every retained message.
    pub(crate) fn all(&self) -> Vec<Arc<Message>> {
        let root = self.root.read();
        let mut out = Vec::new();
        every(&root, &mut out);
        out
    }

    /// How many retained messages there are.
    pub(crate) fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn remove(node: &mut Node, levels: &[&str]) -> Option<Arc<Message>> {
    let Some((first, rest)) = levels.split_first() else {
        return node.message.take();
    };
    let child = node.children.get_mut(*first)?;
    let old = remove(child, rest);
    if child.message.is_none() && child.children.is_empty() {
        node.children.remove(*first);
    }
    old
}

fn every(node: &Node, out: &mut Vec<Arc<Message>>) {
    if let Some(m) = &node.message {
        out.push(m.clone());
    }
    for child in node.children.values() {
        every(child, out);
    }
}

/// Collects candidates for `levels`; the `$` rule and exactness are checked by the caller with `matches`.
fn walk(node: &Node, levels: &[&str], first: bool, out: &mut Vec<Arc<Message>>) {
    let Some((level, rest)) = levels.split_first() else {
        if let Some(m) = &node.message {
            out.push(m.clone());
        }
        return;
    };
    match *level {
        "#" => {
            // "a/#" matches "a" itself and everything below.
            if let Some(m) = &node.message
                && !first
            {
                out.push(m.clone());
            }
            for child in node.children.values() {
                every(child, out);
            }
        }
        "+" => {
            for child in node.children.values() {
                walk(child, rest, false, out);
            }
        }
        exact => {
            if let Some(child) = node.children.get(exact) {
                walk(child, rest, false, out);
            }
        }
    }
}
