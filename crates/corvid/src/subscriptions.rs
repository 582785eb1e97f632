//! The subscription index: a tree of topic levels, with shared-subscription groups.
//!
//! Read-mostly: matching takes the read lock of [`Subscriptions`], a synchronous lock that is never held across an
//! `.await`, and writes matches into a caller-supplied buffer so a publish allocates nothing here.

use crate::session::SessionShared;
use corvid_protocol::{SubscriptionOptions, TopicFilter};
use parking_lot::RwLock;
/// Topic levels are keyed with foldhash: seeded per process, much faster than SipHash on short keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A subscriber as the index holds it.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) session: Arc<SessionShared>,
    pub(crate) options: SubscriptionOptions,
    pub(crate) subscription_id: Option<u32>,
}

/// One match of a topic: a session and the subscription that matched.
#[derive(Clone)]
pub(crate) struct Match {
    pub(crate) session: Arc<SessionShared>,
    pub(crate) options: SubscriptionOptions,
    pub(crate) subscription_id: Option<u32>,
    pub(crate) shared: bool,
}

#[derive(Default)]
struct SharedGroup {
    members: Vec<Subscriber>,
    next: AtomicUsize,
}

/// A topic level. Nodes are the values of their parent's map, so their size counts once per distinct level, for
/// every subscription to a topic of its own.
#[derive(Default)]
struct Node {
    children: Children,
    subscribers: Vec<Subscriber>,
    /// Shared subscription groups: boxed and made on first use, since most levels have none (8 bytes instead of 40).
    #[allow(clippy::box_collection)]
    groups: Option<Box<HashMap<Box<str>, SharedGroup>>>,
}

/// The levels below a node: boxed and made on first use, since most nodes are leaves (8 bytes instead of 40, in
/// every slot of their parent's map).
#[derive(Default)]
#[allow(clippy::box_collection)]
struct Children(Option<Box<HashMap<Box<str>, Node>>>);

impl Children {
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn get(&self, level: &str) -> Option<&Node> {
        self.0.as_ref()?.get(level)
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node> {
        self.0.as_mut()?.get_mut(level)
    }

    fn get_or_insert(&mut self, level: &str) -> &mut Node {
        self.0.get_or_insert_default().entry(level.into()).or_default()
    }

    fn remove(&mut self, level: &str) {
        if let Some(map) = self.0.as_mut() {
            map.remove(level);
            if map.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.groups.is_none()
    }
}

/// The subscription index of the whole broker.
#[derive(Default)]
pub(crate) struct Subscriptions {
    root: RwLock<Node>,
    count: AtomicUsize,
    /// Changes with every subscribe and unsubscribe: what was matched under one generation still holds while it is
    /// current (publishers cache their targets against it).
    generation: AtomicU64,
}

impl Subscriptions {
    /// Adds or replaces the subscription of `subscriber.session` to `filter`. Returns whether it already existed.
    pub(crate) fn subscribe(&self, filter: &TopicFilter, subscriber: Subscriber) -> bool {
        let (group, inner) = split(filter);
        let mut root = self.root.write();
        let mut node = &mut *root;
        for level in inner.split('/') {
            node = node.children.get_or_insert(level);
        }
        let list = match group {
            Some(g) => &mut node.groups.get_or_insert_default().entry(g.into()).or_default().members,
            None => &mut node.subscribers,
        };
        self.generation.fetch_add(1, Ordering::Release);
        let id = subscriber.session.id;
        if let Some(existing) = list.iter_mut().find(|s| s.session.id == id) {
            *existing = subscriber;
            true
        } else {
            if list.is_empty() {
                // Many topics have one subscriber: no room for four.
                list.reserve_exact(1);
            }
            list.push(subscriber);
            self.count.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Removes the subscription of session `session_id` to `filter`. Returns whether it existed.
    pub(crate) fn unsubscribe(&self, filter: &TopicFilter, session_id: u64) -> bool {
        let (group, inner) = split(filter);
        let levels: Vec<&str> = inner.split('/').collect();
        let mut root = self.root.write();
        let removed = remove(&mut root, &levels, group, session_id);
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// The current generation (see the field).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many subscriptions the index holds.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends to `out` every subscription matching `topic`: all ordinary ones, and one member per shared group.
    pub(crate) fn matches(&self, topic: &str, out: &mut Vec<Match>) {
        let root = self.root.read();
        let dollar = topic.starts_with('$');
        let levels = topic.split('/');
        collect(&root, levels, dollar, out);
    }
}

fn split(filter: &TopicFilter) -> (Option<&str>, &str) {
    match filter.shared() {
        Some(s) => (Some(s.group), s.filter),
        None => (None, filter.as_str()),
    }
}

fn remove(node: &mut Node, levels: &[&str], group: Option<&str>, session_id: u64) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let removed = match group {
            Some(g) => {
                let Some(groups) = node.groups.as_mut() else {
                    return false;
                };
                let Some(grp) = groups.get_mut(g) else {
                    return false;
                };
                let before = grp.members.len();
                grp.members.retain(|s| s.session.id != session_id);
                let removed = grp.members.len() != before;
                if grp.members.is_empty() {
                    groups.remove(g);
                    if groups.is_empty() {
                        node.groups = None;
                    }
                }
                removed
            }
            None => {
                let before = node.subscribers.len();
                node.subscribers.retain(|s| s.session.id != session_id);
                node.subscribers.len() != before
            }
        };
        return removed;
    };
    let Some(child) = node.children.get_mut(first) else {
        return false;
    };
    let removed = remove(child, rest, group, session_id);
    if child.is_empty() {
        node.children.remove(first);
    }
    removed
}

fn emit(node: &Node, out: &mut Vec<Match>) {
    for s in &node.subscribers {
        out.push(Match {
            session: s.session.clone(),
            options: s.options,
            subscription_id: s.subscription_id,
            shared: false,
        });
    }
    for group in node.groups.iter().flat_map(|groups| groups.values()) {
        if let Some(s) = pick(group) {
            out.push(Match {
                session: s.session.clone(),
                options: s.options,
                subscription_id: s.subscription_id,
                shared: true,
            });
        }
    }
}

/// Round robin over the group, preferring members whose client is connected.
fn pick(group: &SharedGroup) -> Option<&Subscriber> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|i| &group.members[(start + i) % n])
        .find(|s| s.session.is_online())
        .or_else(|| group.members.get(start % n))
}

fn collect<'a>(
    node: &Node,
    mut levels: impl Iterator<Item = &'a str> + Clone,
    dollar_first: bool,
    out: &mut Vec<Match>,
) {
    let Some(level) = levels.next() else {
        emit(node, out);
        // "a/#" also matches "a".
        if let Some(hash) = node.children.get("#") {
            emit(hash, out);
        }
        return;
    };
    if !dollar_first {
        if let Some(hash) = node.children.get("#") {
            emit(hash, out);
        }
        if let Some(plus) = node.children.get("+") {
            collect(plus, levels.clone(), false, out);
        }
    }
    if let Some(child) = node.children.get(level) {
        collect(child, levels, false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::ItemsSlot;
    use crate::options::OverflowPolicy;

    fn subscriber(id: u64) -> Subscriber {
        let session =
            SessionShared::new(id, format!("c{id}").into(), ItemsSlot::default(), 10, OverflowPolicy::DropOldest);
        Subscriber { session: Arc::new(session), options: SubscriptionOptions::default(), subscription_id: None }
    }

    fn matched(index: &Subscriptions, topic: &str) -> Vec<u64> {
        let mut out = Vec::new();
        index.matches(topic, &mut out);
        let mut ids: Vec<u64> = out.iter().map(|m| m.session.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn unsubscribing_everything_leaves_no_level_behind() {
        let index = Subscriptions::default();
        let filters = ["a/b/c", "a/+/c", "a/#", "#", "+/b/+", "$share/g/a/b/c", "x"];
        for (i, f) in filters.iter().enumerate() {
            assert!(!index.subscribe(&TopicFilter::new(*f).unwrap(), subscriber(i as u64)));
        }
        assert_eq!(matched(&index, "a/b/c"), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(matched(&index, "a"), vec![2, 3]);
        assert_eq!(matched(&index, "$SYS/a"), Vec::<u64>::new());
        for (i, f) in filters.iter().enumerate() {
            assert!(index.unsubscribe(&TopicFilter::new(*f).unwrap(), i as u64), "{f}");
            assert!(!index.unsubscribe(&TopicFilter::new(*f).unwrap(), i as u64), "{f} twice");
        }
        assert_eq!(index.len(), 0);
        assert!(index.root.read().is_empty(), "every level was pruned");
    }
}
