//! [`Sparse`]: a set of properties kept out of line, so that the packets and messages that carry none (nearly all)
//! stay small to move.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// A type with a shared value that has nothing set, which a [`Sparse`] with no box reads as.
pub trait Unset: Default + PartialEq + 'static {
    /// The value with nothing set.
    fn unset() -> &'static Self;

    /// Whether nothing is set: equal to [`Unset::unset`], told without comparing values.
    fn is_unset(&self) -> bool;
}

/// A `T` kept in a box only once something in it is set: 8 bytes and no allocation while it is unset.
///
/// Reads go through `Deref` (an unset one reads as [`Unset::unset`]); a mutable borrow (`DerefMut`) allocates the box
/// if there is none, so code on a hot path that only takes or clears fields goes through [`Sparse::set_mut`].
/// Equality compares the values, boxed or not.
pub struct Sparse<T: Unset>(Option<Box<T>>);

impl<T: Unset> Sparse<T> {
    /// Nothing set, no allocation.
    pub const fn unset() -> Self {
        Self(None)
    }

    /// Whether nothing is set.
    pub fn is_unset(&self) -> bool {
        self.0.as_deref().is_none_or(T::is_unset)
    }

    /// The value, mutably, if it has a box: for taking or clearing fields of a set that may be unset, which has
    /// nothing to take or clear and keeps no box for it.
    pub fn set_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    /// Unsets everything, keeping the box (if any) for reuse: what the value held is dropped now.
    pub fn clear(&mut self) {
        if let Some(value) = self.0.as_deref_mut() {
            *value = T::default();
        }
    }

    /// Frees the box if nothing in it is set any more (after fields were cleared), so copies allocate nothing.
    pub fn free_if_unset(&mut self) {
        if self.0.as_deref().is_some_and(T::is_unset) {
            self.0 = None;
        }
    }

    /// The value, out of its box.
    pub fn into_inner(self) -> T {
        self.0.map_or_else(T::default, |value| *value)
    }
}

impl<T: Unset> Default for Sparse<T> {
    fn default() -> Self {
        Self::unset()
    }
}

impl<T: Unset> From<T> for Sparse<T> {
    /// Boxes `value` unless it is unset.
    fn from(value: T) -> Self {
        if value.is_unset() { Self(None) } else { Self(Some(Box::new(value))) }
    }
}

impl<T: Unset> Deref for Sparse<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or_else(|| T::unset())
    }
}

impl<T: Unset> DerefMut for Sparse<T> {
    /// Allocates the box if there is none.
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<T: Unset + Clone> Clone for Sparse<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }

    /// Keeps `self`'s box, if it has one, for the copy: a spare box reused from one copy to the next.
    fn clone_from(&mut self, source: &Self) {
        match &mut self.0 {
            Some(mine) => (**mine).clone_from(source),
            None => self.0.clone_from(&source.0),
        }
    }
}

impl<T: Unset> PartialEq for Sparse<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Unset + Eq> Eq for Sparse<T> {}

impl<T: Unset> PartialEq<T> for Sparse<T> {
    fn eq(&self, other: &T) -> bool {
        **self == *other
    }
}

impl<T: Unset + fmt::Debug> fmt::Debug for Sparse<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PublishProperties;

    #[test]
    fn unset_reads_as_empty_without_a_box() {
        let sparse = Sparse::<PublishProperties>::default();
        assert!(sparse.0.is_none());
        assert!(sparse.is_unset());
        assert_eq!(sparse.message_expiry_interval, None);
        assert!(sparse.user_properties.is_empty());
        assert_eq!(sparse, PublishProperties::default());
        assert_eq!(std::mem::size_of::<Sparse<PublishProperties>>(), 8);
    }

    #[test]
    fn setting_a_field_boxes_it_and_equality_ignores_the_box() {
        let mut sparse = Sparse::<PublishProperties>::unset();
        sparse.content_type = Some("text/plain".into());
        assert!(sparse.0.is_some());
        assert!(!sparse.is_unset());
        let same = Sparse::from(PublishProperties { content_type: Some("text/plain".into()), ..Default::default() });
        assert_eq!(sparse, same);
        // A box whose fields were all cleared again equals one never boxed, and can be freed.
        sparse.content_type = None;
        assert!(sparse.is_unset());
        assert_eq!(sparse, Sparse::default());
        assert!(sparse.0.is_some());
        sparse.free_if_unset();
        assert!(sparse.0.is_none());
        assert!(sparse.set_mut().is_none(), "nothing to change, no box made");
        assert!(sparse.0.is_none());
        assert_eq!(sparse.clone().into_inner(), PublishProperties::default());
    }

    #[test]
    fn clone_from_keeps_the_box() {
        let mut spare = Sparse::from(PublishProperties { topic_alias: Some(3), ..Default::default() });
        let boxed: *const PublishProperties = &*spare;
        spare.clone_from(&Sparse::default());
        assert!(spare.is_unset());
        assert!(std::ptr::eq(boxed, &*spare), "the same box, emptied");
        let set = Sparse::from(PublishProperties { content_type: Some("a".into()), ..Default::default() });
        spare.clone_from(&set);
        assert_eq!(spare, set);
        assert!(std::ptr::eq(boxed, &*spare));
        let mut unboxed = Sparse::<PublishProperties>::default();
        unboxed.clone_from(&set);
        assert_eq!(unboxed, set);
        spare.clear();
        assert!(spare.is_unset());
        assert!(std::ptr::eq(boxed, &*spare), "cleared, not freed");
    }

    #[test]
    fn from_an_unset_value_does_not_allocate() {
        assert!(Sparse::from(PublishProperties::default()).0.is_none());
        let set = Sparse::from(PublishProperties { message_expiry_interval: Some(5), ..Default::default() });
        assert_eq!(set.into_inner().message_expiry_interval, Some(5));
    }
}
