//! Session items: a typed map that lives with a session and is handed to every hook.

use parking_lot::Mutex;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

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
#[derive(Clone, Default)]
pub struct SessionItems(Arc<Mutex<Map>>);

impl SessionItems {
    /// Stores `value`, replacing any earlier item of its type; returns the earlier one.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        self.0.lock().insert(TypeId::of::<T>(), Box::new(value)).and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// A copy of the item of type `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.0.lock().get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned()
    }

    /// Whether there is an item of type `T`.
    pub fn contains<T: Any + Send + Sync>(&self) -> bool {
        self.0.lock().contains_key(&TypeId::of::<T>())
    }

    /// Changes the item of type `T` in place; returns false if there is none.
    pub fn update<T: Any + Send + Sync>(&self, f: impl FnOnce(&mut T)) -> bool {
        match self.0.lock().get_mut(&TypeId::of::<T>()).and_then(|v| v.downcast_mut::<T>()) {
            Some(item) => {
                f(item);
                true
            }
            None => false,
        }
    }

    /// Removes and returns the item of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<T> {
        self.0.lock().remove(&TypeId::of::<T>()).and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Moves every item of `other` into this map (items of the same type are replaced).
    pub(crate) fn absorb(&self, other: &SessionItems) {
        if Arc::ptr_eq(&self.0, &other.0) {
            return;
        }
        let moved: Map = std::mem::take(&mut *other.0.lock());
        self.0.lock().extend(moved);
    }
}

impl fmt::Debug for SessionItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionItems({} items)", self.len())
    }
}
