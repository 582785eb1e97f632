//! Topic names, topic filters, matching and shared-subscription filters.

use bytestring::ByteString;
use std::fmt;
use std::ops::Deref;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is empty.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than 65,535 bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// The topic contains U+0000.
    #[error("topic contains U+0000")]
    NullCharacter,
    /// A topic name contains `+` or `#`.
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// A `+` or `#` does not occupy a whole level, or `#` is not last.
    #[error("wildcard not at a whole level, or '#' not last")]
    MisplacedWildcard,
    /// A `$share/` filter without a valid group name or filter.
    #[error("malformed shared subscription filter")]
    MalformedShare,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A valid topic name: non-empty, no wildcards, no U+0000, at most 65,535 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a topic name.
    pub fn new(name: impl Into<ByteString>) -> Result<Self, TopicError> {
        let name = name.into();
        Self::validate(&name)?;
        Ok(Self(name))
    }

    /// Checks `name` without building a `TopicName`.
    pub fn validate(name: &str) -> Result<(), TopicError> {
        check_common(name)?;
        if name.bytes().any(|b| b == b'+' || b == b'#') {
            return Err(TopicError::WildcardInName);
        }
        Ok(())
    }

    /// A name the decoder has already checked (non-empty, no U+0000, no wildcard, at most 65,535 bytes).
    pub(crate) fn from_checked(name: ByteString) -> Self {
        debug_assert!(Self::validate(&name).is_ok());
        Self(name)
    }

    /// The empty name of an MQTT 5 PUBLISH that carries only a topic alias (MQTT 5.0 section 3.3.2.3.4).
    pub fn alias_only() -> Self {
        Self(ByteString::new())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A copy in an allocation of its own. A decoded name is a slice of the packet it came in, which it keeps
    /// alive; a name kept for long (a retained message's) is better detached.
    pub fn detached(&self) -> Self {
        Self(ByteString::from(self.as_str()))
    }

    /// The underlying shared string.
    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    /// Whether the name starts with `$` (e.g. `$SYS/...`), which leading wildcards never match.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl Deref for TopicName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid topic filter: non-empty, `+` and `#` only as whole levels, `#` only last. Shared-subscription filters
/// (`$share/{group}/{filter}`) are valid filters too; [`TopicFilter::shared`] splits them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// Validates `filter` as a topic filter.
    pub fn new(filter: impl Into<ByteString>) -> Result<Self, TopicError> {
        let filter = filter.into();
        Self::validate(&filter)?;
        Ok(Self(filter))
    }

    /// Checks `filter` without building a `TopicFilter`.
    pub fn validate(filter: &str) -> Result<(), TopicError> {
        check_common(filter)?;
        Self::check_structure(filter)
    }

    /// A filter from the decoder, which has already checked its length (a two-byte prefix) and refused U+0000.
    pub(crate) fn from_decoded(filter: ByteString) -> Result<Self, TopicError> {
        if filter.is_empty() {
            return Err(TopicError::Empty);
        }
        Self::check_structure(&filter)?;
        Ok(Self(filter))
    }

    /// The shared-subscription form and the wildcard levels.
    fn check_structure(filter: &str) -> Result<(), TopicError> {
        if let Some(rest) = filter.strip_prefix("$share/") {
            let rest = rest.as_bytes();
            let slash = rest.iter().position(|&b| b == b'/').ok_or(TopicError::MalformedShare)?;
            let (group, inner) = (&rest[..slash], &rest[slash + 1..]);
            if group.is_empty() || group.iter().any(|&b| b == b'+' || b == b'#') || inner.is_empty() {
                return Err(TopicError::MalformedShare);
            }
            return check_levels(inner);
        }
        if filter == "$share" {
            return Err(TopicError::MalformedShare);
        }
        check_levels(filter.as_bytes())
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying shared string.
    pub fn as_byte_string(&self) -> &ByteString {
        &self.0
    }

    /// Whether the filter holds a `+` or `#` level.
    pub fn has_wildcard(&self) -> bool {
        self.0.bytes().any(|b| b == b'+' || b == b'#')
    }

    /// The group and inner filter of a `$share/{group}/{filter}` filter, `None` for an ordinary filter.
    pub fn shared(&self) -> Option<SharedFilter<'_>> {
        let rest = self.0.strip_prefix("$share/")?;
        let (group, filter) = rest.split_once('/')?;
        Some(SharedFilter { group, filter })
    }

    /// Whether `name` matches this filter (for a shared filter, its inner filter).
    pub fn matches(&self, name: &TopicName) -> bool {
        let filter = self.shared().map_or(self.as_str(), |s| s.filter);
        matches(filter, name.as_str())
    }
}

/// Whether every `+` and `#` is a whole level, and `#` the last one: in one pass over the bytes, each wildcard must
/// have a `/` or an end on both sides, and `#` must be the last byte.
fn check_levels(filter: &[u8]) -> Result<(), TopicError> {
    for (i, &b) in filter.iter().enumerate() {
        if b != b'+' && b != b'#' {
            continue;
        }
        let whole_level = (i == 0 || filter[i - 1] == b'/') && filter.get(i + 1).is_none_or(|&next| next == b'/');
        if !whole_level || (b == b'#' && i + 1 != filter.len()) {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

impl Deref for TopicFilter {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a `$share/{group}/{filter}` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share name.
    pub group: &'a str,
    /// The filter the group subscribes to.
    pub filter: &'a str,
}

/// Whether topic `name` matches `filter`, both already valid. A name starting with `$` is not matched by a filter
/// whose first level is a wildcard (MQTT 5.0 section 4.7.2).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(nl)) if fl == nl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TopicName::new("a/b").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert!(TopicName::new("a//b").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(TopicName::new("x".repeat(65536)), Err(TopicError::TooLong));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/+", "a//#", "$share/g/a/#", "$share/g/#", "sport/tennis/+"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a+", "#a", "a/b#", "+a/b", "$share/g", "$share//a", "$share/g+/a", "$share/g/"] {
            assert!(TopicFilter::new(bad).is_err(), "{bad}");
        }
    }

    /// The level rule as the specification states it, level by level.
    fn check_levels_by_level(filter: &str) -> Result<(), TopicError> {
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            match level {
                "#" if levels.peek().is_some() => return Err(TopicError::MisplacedWildcard),
                "#" | "+" => {}
                _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
                _ => {}
            }
        }
        Ok(())
    }

    #[test]
    fn byte_level_check_agrees_with_the_level_by_level_rule() {
        // Every string of up to 7 characters over the alphabet that matters.
        let alphabet = [b'a', b'/', b'+', b'#'];
        let mut checked = 0;
        for len in 0..=7u32 {
            for n in 0..4usize.pow(len) {
                let s: String = (0..len).map(|i| alphabet[(n / 4usize.pow(i)) % 4] as char).collect();
                assert_eq!(check_levels(s.as_bytes()), check_levels_by_level(&s), "{s:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 21_845);
    }

    #[test]
    fn decoded_filters_are_checked_like_new_ones() {
        for f in ["", "#", "a/#/b", "$share/g/a/+", "$share/g", "$share", "a+", "$share/g+/a", "sport/+/x"] {
            assert_eq!(
                TopicFilter::from_decoded(ByteString::from(f)).map(|t| t.as_str().to_string()),
                TopicFilter::new(f).map(|t| t.as_str().to_string()),
                "{f:?}"
            );
        }
    }

    #[test]
    fn shared_split() {
        let f = TopicFilter::new("$share/group/a/+/c").unwrap();
        assert_eq!(f.shared(), Some(SharedFilter { group: "group", filter: "a/+/c" }));
        assert!(f.matches(&TopicName::new("a/b/c").unwrap()));
        assert_eq!(TopicFilter::new("a/b").unwrap().shared(), None);
    }

    #[test]
    fn matching_from_the_spec() {
        // MQTT 3.1.1 section 4.7.1.2 and 4.7.1.3 examples.
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+", ""));
        // 4.7.2: `$` topics.
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }
}
