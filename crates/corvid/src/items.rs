//! Session items: a typed map that lives with a session and is handed to every hook.

use crate::session::SessionShared;
use parking_lot::Mutex;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

type Map = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// Per-session data for hooks: written in the connection validator, read or changed in every later hook.
///
/// Keyed by type, like `http::Extensions`: define a type per item. Cloning gives another handle to the same map.
///
/// ```
/// use corvid::SessionItems;
/// #[derive(Clone, Debug, PartialEq)]
/// struct Tenant(String);
///
/// let items = SessionItems::default();
/// items.insert(Tenant("acme".into()));
/// assert_eq!(items.get::<Tenant>(), Some(Tenant("acme".into())));
/// items.update(|t: &mut Tenant| t.0.push_str("-eu"));
/// assert_eq!(items.get::<Tenant>().unwrap().0, "acme-eu");
/// ```
#[derive(Clone)]
pub struct SessionItems(Handle);

/// Where the items of a [`SessionItems`] live.
#[derive(Clone)]
enum Handle {
    /// A map of its own: items made before their session exists (for the connection hooks), or with none.
    Own(Arc<Mutex<Map>>),
    /// The map of a session, made when the first item is stored: most sessions never have one.
    Session(Arc<SessionShared>),
}

impl Default for SessionItems {
    fn default() -> Self {
        Self(Handle::Own(Arc::default()))
    }
}

/// The items of a session: nothing until the first is stored, for the many sessions whose hooks store none.
///
/// Every [`SessionItems`] of the session reaches the map through the session itself, so they share it however late
/// it is made.
#[derive(Default)]
pub(crate) struct ItemsSlot(OnceLock<Arc<Mutex<Map>>>);

impl ItemsSlot {
    /// A slot holding the map of `items` if it matters: it holds an item, or a hook kept a copy of the handle (and
    /// may store items through it later). Otherwise an empty slot.
    pub(crate) fn adopt(items: Option<SessionItems>) -> Self {
        match items.map(|items| items.0) {
            Some(Handle::Own(map)) if Arc::strong_count(&map) > 1 || !map.lock().is_empty() => Self(map.into()),
            _ => Self::default(),
        }
    }
}

impl SessionItems {
    /// The items of `session`.
    pub(crate) fn of(session: Arc<SessionShared>) -> Self {
        Self(Handle::Session(session))
    }

    /// The map, if it exists.
    fn map(&self) -> Option<&Mutex<Map>> {
        match &self.0 {
            Handle::Own(map) => Some(map),
            Handle::Session(session) => session.items.0.get().map(|map| &**map),
        }
    }

    /// The map, made if it does not exist yet.
    fn map_or_make(&self) -> &Mutex<Map> {
        match &self.0 {
            Handle::Own(map) => map,
            Handle::Session(session) => session.items.0.get_or_init(Arc::default),
        }
    }

    /// Stores `value`, replacing any earlier item of its type; returns the earlier one.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        let old = self.map_or_make().lock().insert(TypeId::of::<T>(), Box::new(value));
        old.and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// A copy of the item of type `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.map()?.lock().get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    /// Whether there is an item of type `T`.
    pub fn contains<T: Any + Send + Sync>(&self) -> bool {
        self.map().is_some_and(|map| map.lock().contains_key(&TypeId::of::<T>()))
    }

    /// Changes the item of type `T` in place; returns false if there is none.
    pub fn update<T: Any + Send + Sync>(&self, f: impl FnOnce(&mut T)) -> bool {
        let Some(map) = self.map() else { return false };
        match map.lock().get_mut(&TypeId::of::<T>()).and_then(|v| v.downcast_mut::<T>()) {
            Some(item) => {
                f(item);
                true
            }
            None => false,
        }
    }

    /// Removes and returns the item of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<T> {
        self.map()?.lock().remove(&TypeId::of::<T>()).and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.map().map_or(0, |map| map.lock().len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every item of `other` into this map (items of the same type are replaced).
    pub(crate) fn absorb(&self, other: &SessionItems) {
        let Some(from) = other.map() else { return };
        if self.map().is_some_and(|to| std::ptr::eq(to, from)) {
            return;
        }
        let moved: Map = std::mem::take(&mut *from.lock());
        if !moved.is_empty() {
            self.map_or_make().lock().extend(moved);
        }
    }
}

impl fmt::Debug for SessionItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionItems({} items)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OverflowPolicy;

    fn session(items: Option<SessionItems>) -> Arc<SessionShared> {
        let slot = ItemsSlot::adopt(items);
        Arc::new(SessionShared::new(1, "c".into(), slot, 10, OverflowPolicy::DropOldest))
    }

    #[test]
    fn a_session_has_no_map_until_an_item_is_stored_and_every_handle_shares_it() {
        let session = session(None);
        let (a, b) = (session.items(), session.items());
        assert!(a.is_empty() && a.get::<u8>().is_none() && !a.update(|_: &mut u8| {}) && a.remove::<u8>().is_none());
        assert!(session.items.0.get().is_none(), "reading made no map");
        let kept = b.clone();
        a.insert(7u8);
        assert!(session.items.0.get().is_some());
        assert_eq!(kept.get::<u8>(), Some(7));
        assert!(kept.update(|n: &mut u8| *n += 1));
        assert_eq!(session.items().get::<u8>(), Some(8));
    }

    #[test]
    fn items_of_the_handshake_become_the_session_items_only_if_they_matter() {
        assert!(session(Some(SessionItems::default())).items.0.get().is_none());

        let stored = SessionItems::default();
        stored.insert("tenant");
        assert_eq!(session(Some(stored)).items().get::<&str>(), Some("tenant"));

        // A hook kept a copy: what it stores later reaches the session.
        let kept = SessionItems::default();
        let session = session(Some(kept.clone()));
        kept.insert(1u32);
        assert_eq!(session.items().get::<u32>(), Some(1));
    }

    #[test]
    fn absorb_moves_items_into_a_session_and_makes_no_map_for_none() {
        let session = session(None);
        session.items().absorb(&SessionItems::default());
        assert!(session.items.0.get().is_none());
        let other = SessionItems::default();
        other.insert(2u16);
        session.items().absorb(&other);
        assert_eq!(session.items().get::<u16>(), Some(2));
        assert!(other.is_empty());
        session.items().absorb(&session.items());
        assert_eq!(session.items().len(), 1);
    }
}
