//! ACL files in Mosquitto's format:
//!
//! ```text
//! # Anonymous clients: the lines before any `user`.
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#          # access is read, write, readwrite (the default) or deny
//! topic deny alice/secret/#        # deny wins over every grant
//!
//! pattern readwrite devices/%c/#   # for every client; %c is the client id, %u the user name
//! pattern read users/%u/inbox
//! ```
//!
//! `%c` and `%u` stand for one whole topic level. A client id or user name that could not be one literal level
//! (it holds `/`, `+` or `#`), or a missing user name, makes the rule match nothing, so such a name never widens a
//! pattern. Topics starting with `$` are matched only by rules whose first level is not a wildcard, as for
//! subscriptions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, wanted: Want) -> bool {
        matches!((self, wanted), (Self::ReadWrite, _) | (Self::Read, Want::Read) | (Self::Write, Want::Write))
    }
}

/// The kind of access asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Receive messages of a topic.
    Read,
    /// Publish to a topic.
    Write,
}

/// One level of a rule's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `+`
    One,
    /// `#`
    Rest,
    /// `%c` in a pattern.
    ClientId,
    /// `%u` in a pattern.
    Username,
}

/// A level with the client's names put in, or a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved<'a> {
    Literal(&'a str),
    One,
    Rest,
}

#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    levels: Vec<Level>,
}

/// Who asks: the client id and user name of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    /// The client identifier.
    pub(crate) client_id: &'a str,
    /// The user name, if the client sent one.
    pub(crate) username: Option<&'a str>,
}

/// The rules of an ACL file.
#[derive(Debug, Default)]
pub(crate) struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// A malformed ACL file: the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AclFileError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },
}

impl Acl {
    /// Reads and parses `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, AclFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AclFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|(line, message)| AclFileError::Line { path: path.to_owned(), line, message })
    }

    /// Parses the text of an ACL file; the error is the line number (1-based) and what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut acl = Self::default();
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err((number, "`user` needs a user name".to_owned()));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let rule = parse_rule(rest, pattern).map_err(|e| (number, format!("{keyword}: {e}")))?;
                    match (&user, pattern) {
                        (_, true) => acl.patterns.push(rule),
                        (Some(user), false) => acl.users.entry(user.clone()).or_default().push(rule),
                        (None, false) => acl.anonymous.push(rule),
                    }
                }
                other => {
                    return Err((number, format!("unknown keyword {other:?} (expected topic, user or pattern)")));
                }
            }
        }
        Ok(acl)
    }

    /// How many rules the file has.
    pub(crate) fn len(&self) -> usize {
        self.anonymous.len() + self.users.values().map(Vec::len).sum::<usize>() + self.patterns.len()
    }

    /// The rules that apply to `client`: its user's (or the anonymous ones), then the patterns.
    fn rules<'a>(&'a self, client: &Client<'_>) -> impl Iterator<Item = &'a Rule> {
        let own = match client.username {
            Some(name) => self.users.get(name).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous[..],
        };
        own.iter().chain(&self.patterns)
    }

    /// Whether `client` may read or write `topic` (a topic name): some rule grants it and no `deny` rule matches.
    pub(crate) fn allows(&self, client: &Client<'_>, topic: &str, wanted: Want) -> bool {
        let mut granted = false;
        for rule in self.rules(client) {
            if !matches_topic(&rule.levels, client, topic) {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= rule.access.grants(wanted);
        }
        granted
    }

    /// Whether `client` may subscribe to `filter` (the inner filter of a shared subscription): some read rule
    /// could match a topic of the filter, and no `deny` rule covers all of them. Messages are still checked one by
    /// one when they are delivered.
    pub(crate) fn allows_subscription(&self, client: &Client<'_>, filter: &str) -> bool {
        let mut granted = false;
        for rule in self.rules(client) {
            let Some(levels) = resolve(&rule.levels, client) else { continue };
            if rule.access == Access::Deny {
                if covers(&levels, filter) {
                    return false;
                }
            } else if rule.access.grants(Want::Read) && overlaps(&levels, filter) {
                granted = true;
            }
        }
        granted
    }
}

/// `[read|write|readwrite|deny] TOPIC`. The topic is the rest of the line (topics may hold spaces).
fn parse_rule(rest: &str, pattern: bool) -> Result<Rule, String> {
    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let access = match first {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    let (access, topic) = match access {
        Some(access) => (access, after.trim()),
        None => (Access::ReadWrite, rest),
    };
    if topic.is_empty() {
        return Err(match access {
            Access::ReadWrite if first.is_empty() => "needs a topic".to_owned(),
            _ => format!("`{first}` needs a topic after it"),
        });
    }
    corvid::TopicFilter::validate(topic).map_err(|e| format!("{topic:?} is not a valid topic filter: {e}"))?;
    let mut levels = Vec::new();
    for level in topic.split('/') {
        levels.push(match level {
            "+" => Level::One,
            "#" => Level::Rest,
            "%c" if pattern => Level::ClientId,
            "%u" if pattern => Level::Username,
            _ if pattern && (level.contains("%c") || level.contains("%u")) => {
                return Err(format!("{topic:?}: %c and %u must be a whole topic level"));
            }
            _ => Level::Literal(level.to_owned()),
        });
    }
    Ok(Rule { access, levels })
}

/// A name that can stand for exactly one literal topic level.
fn as_level(name: &str) -> Option<&str> {
    (!name.is_empty() && !name.contains(['/', '+', '#'])).then_some(name)
}

fn resolve_level<'a>(level: &'a Level, client: &Client<'a>) -> Option<Resolved<'a>> {
    Some(match level {
        Level::Literal(s) => Resolved::Literal(s),
        Level::One => Resolved::One,
        Level::Rest => Resolved::Rest,
        Level::ClientId => Resolved::Literal(as_level(client.client_id)?),
        Level::Username => Resolved::Literal(as_level(client.username?)?),
    })
}

/// The rule's levels for this client, `None` if a substitution makes it match nothing.
fn resolve<'a>(levels: &'a [Level], client: &Client<'a>) -> Option<Vec<Resolved<'a>>> {
    levels.iter().map(|l| resolve_level(l, client)).collect()
}

/// Whether the rule matches topic name `topic` (no allocation: this runs for every delivery).
fn matches_topic(levels: &[Level], client: &Client<'_>, topic: &str) -> bool {
    let first_is_wildcard = matches!(levels.first(), Some(Level::One | Level::Rest));
    if topic.starts_with('$') && first_is_wildcard {
        return false;
    }
    let mut names = topic.split('/');
    let mut rule = levels.iter();
    loop {
        let level = match rule.next() {
            Some(level) => match resolve_level(level, client) {
                Some(resolved) => Some(resolved),
                None => return false,
            },
            None => None,
        };
        match (level, names.next()) {
            (Some(Resolved::Rest), _) => return true,
            (Some(Resolved::One), Some(_)) => {}
            (Some(Resolved::Literal(l)), Some(n)) if l == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A level of a subscription filter.
fn filter_level(level: &str) -> Resolved<'_> {
    match level {
        "+" => Resolved::One,
        "#" => Resolved::Rest,
        other => Resolved::Literal(other),
    }
}

/// Whether some topic name matches both the rule and the filter.
fn overlaps(rule: &[Resolved<'_>], filter: &str) -> bool {
    let filter: Vec<Resolved<'_>> = filter.split('/').map(filter_level).collect();
    // Topics starting with '$' are matched by neither side's leading wildcard: if one side starts with a literal
    // beginning with '$', the other must start with the same literal.
    let dollar = |levels: &[Resolved<'_>]| matches!(levels.first(), Some(Resolved::Literal(l)) if l.starts_with('$'));
    let wild = |levels: &[Resolved<'_>]| matches!(levels.first(), Some(Resolved::One | Resolved::Rest));
    if (dollar(rule) && wild(&filter)) || (dollar(&filter) && wild(rule)) {
        return false;
    }
    let (mut a, mut b) = (rule.iter(), filter.iter());
    loop {
        match (a.next(), b.next()) {
            (Some(Resolved::Rest), _) | (_, Some(Resolved::Rest)) => return true,
            (None, None) => return true,
            (Some(Resolved::One), Some(_)) | (Some(_), Some(Resolved::One)) => {}
            (Some(Resolved::Literal(x)), Some(Resolved::Literal(y))) if x == y => {}
            _ => return false,
        }
    }
}

/// Whether every topic name the filter matches is matched by the rule.
fn covers(rule: &[Resolved<'_>], filter: &str) -> bool {
    let filter: Vec<Resolved<'_>> = filter.split('/').map(filter_level).collect();
    let wild = |levels: &[Resolved<'_>]| matches!(levels.first(), Some(Resolved::One | Resolved::Rest));
    // A rule starting with a wildcard does not match `$` topics, which a filter starting with one does not match
    // either; a filter starting with a `$` literal is only covered by a rule starting with the same literal.
    if wild(rule) && matches!(filter.first(), Some(Resolved::Literal(l)) if l.starts_with('$')) {
        return false;
    }
    let (mut r, mut f) = (rule.iter(), filter.iter());
    loop {
        match (r.next(), f.next()) {
            (Some(Resolved::Rest), _) => return true,
            (None, None) => return true,
            // The filter's `#` also matches the parent level, which only a rule `#` (handled above) covers.
            (_, Some(Resolved::Rest)) => return false,
            (Some(Resolved::One), Some(_)) => {}
            (Some(Resolved::Literal(x)), Some(Resolved::Literal(y))) if x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write shared/in

user bob
topic bob/#
topic read $SYS/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
";

    fn client<'a>(client_id: &'a str, username: Option<&'a str>) -> Client<'a> {
        Client { client_id, username }
    }

    #[test]
    fn user_blocks_anonymous_lines_and_patterns() {
        let acl = Acl::parse(FILE).unwrap();
        assert_eq!(acl.len(), 8);
        let anon = client("a1", None);
        let alice = client("c1", Some("alice"));
        let bob = client("c2", Some("bob"));
        assert!(acl.allows(&anon, "public/news", Want::Read));
        assert!(!acl.allows(&anon, "public/news", Want::Write));
        assert!(!acl.allows(&alice, "public/news", Want::Read), "anonymous lines are for anonymous clients");
        assert!(acl.allows(&alice, "alice/x", Want::Write) && acl.allows(&alice, "alice", Want::Read));
        assert!(!acl.allows(&alice, "alice/secret/k", Want::Read), "deny wins");
        assert!(!acl.allows(&alice, "alice/secret", Want::Write), "alice/secret/# covers its parent");
        assert!(acl.allows(&alice, "shared/in", Want::Write) && !acl.allows(&alice, "shared/in", Want::Read));
        assert!(acl.allows(&bob, "bob/a/b", Want::Write) && acl.allows(&bob, "bob/a/b", Want::Read));
        assert!(!acl.allows(&bob, "alice/x", Want::Read));
        assert!(acl.allows(&bob, "$SYS/broker/uptime", Want::Read));
        let nobody = client("c3", Some("mallory"));
        assert!(!acl.allows(&nobody, "public/news", Want::Read));
    }

    #[test]
    fn patterns_substitute_whole_levels() {
        let acl = Acl::parse(FILE).unwrap();
        let c = client("dev-7", Some("carol"));
        assert!(acl.allows(&c, "devices/dev-7/temp", Want::Write));
        assert!(!acl.allows(&c, "devices/dev-8/temp", Want::Write));
        assert!(acl.allows(&c, "users/carol/inbox", Want::Read));
        assert!(!acl.allows(&c, "users/carol/inbox", Want::Write));
        assert!(!acl.allows(&client("x", None), "users//inbox", Want::Read), "%u without a user name");
        assert!(!acl.allows(&client("", None), "devices//t", Want::Write), "empty client id");
    }

    #[test]
    fn wildcards_in_names_never_widen_a_pattern() {
        let acl = Acl::parse(FILE).unwrap();
        for evil in ["+", "#", "a/b", "a+", "x#"] {
            let by_user = client("dev", Some(evil));
            let by_id = client(evil, Some("u"));
            for topic in ["users/alice/inbox", "users/+/inbox", "users/a/b/inbox", "users/x#/inbox"] {
                assert!(!acl.allows(&by_user, topic, Want::Read), "user {evil:?} reads {topic}");
            }
            for topic in ["devices/other/t", "devices/a/b/t", "devices/+/t"] {
                assert!(!acl.allows(&by_id, topic, Want::Write), "client {evil:?} writes {topic}");
            }
            assert!(!acl.allows_subscription(&by_user, "users/+/inbox"));
            assert!(!acl.allows_subscription(&by_id, "devices/#"));
        }
    }

    #[test]
    fn subscriptions_need_a_read_rule_that_could_match() {
        let acl = Acl::parse(FILE).unwrap();
        let alice = client("c1", Some("alice"));
        assert!(acl.allows_subscription(&alice, "alice/#"));
        assert!(acl.allows_subscription(&alice, "#"), "overlaps alice/#");
        assert!(acl.allows_subscription(&alice, "+/x"));
        assert!(!acl.allows_subscription(&alice, "shared/in"), "write only");
        assert!(!acl.allows_subscription(&alice, "alice/secret/#"), "covered by deny");
        assert!(!acl.allows_subscription(&alice, "alice/secret/+/k"), "covered by deny");
        assert!(acl.allows_subscription(&alice, "alice/+/k"), "only partly denied");
        assert!(!acl.allows_subscription(&alice, "$SYS/#"), "a leading wildcard never reaches $ topics");
        let bob = client("c2", Some("bob"));
        assert!(acl.allows_subscription(&bob, "$SYS/broker/+"));
        assert!(!acl.allows_subscription(&bob, "other/#"));
        let dev = client("d9", Some("nobody"));
        assert!(acl.allows_subscription(&dev, "devices/d9/#"));
        assert!(acl.allows_subscription(&dev, "devices/+/cmd"), "overlaps devices/d9/#");
        assert!(!acl.allows_subscription(&dev, "devices"), "devices/d9/# does not match devices");
        let acl = Acl::parse("topic read #\n").unwrap();
        assert!(!acl.allows_subscription(&client("a", None), "$SYS/x"));
        assert!(acl.allows_subscription(&client("a", None), "x/y"));
    }

    #[test]
    fn deny_coverage() {
        let levels = |s: &'static str| s.split('/').map(filter_level).collect::<Vec<_>>();
        assert!(covers(&levels("a/#"), "a"));
        assert!(covers(&levels("a/#"), "a/+/#"));
        assert!(covers(&levels("+/b"), "x/b"));
        assert!(!covers(&levels("a/+"), "a/#"));
        assert!(!covers(&levels("a/b"), "a/+"));
        assert!(!covers(&levels("#"), "$SYS/x"));
        assert!(covers(&levels("#"), "#"));
        assert!(overlaps(&levels("a/+/c"), "a/b/#"));
        assert!(overlaps(&levels("a/#"), "a"));
        assert!(!overlaps(&levels("a/b"), "a/b/c"));
        assert!(!overlaps(&levels("+/x"), "$SYS/x"));
    }

    #[test]
    fn access_words_and_topics_with_spaces() {
        let acl =
            Acl::parse("topic my topic/with spaces\ntopic write out box\ntopic read\n").map(|a| a.len()).unwrap_err();
        assert_eq!(acl.0, 3, "{}", acl.1);
        let acl = Acl::parse("topic my topic/with spaces\ntopic write out box\n").unwrap();
        let anon = client("a", None);
        assert!(acl.allows(&anon, "my topic/with spaces", Want::Write));
        assert!(acl.allows(&anon, "out box", Want::Write) && !acl.allows(&anon, "out box", Want::Read));
    }

    #[test]
    fn malformed_lines_name_the_line_and_the_fault() {
        for (text, line, expected) in [
            ("topic read a/#\nuser\n", 2, "needs a user name"),
            ("\n\ntopci read a\n", 3, "unknown keyword \"topci\""),
            ("topic read a/#/b\n", 1, "not a valid topic filter"),
            ("topic read a+/b\n", 1, "not a valid topic filter"),
            ("user a\ntopic deny\n", 2, "`deny` needs a topic"),
            ("pattern read a/x%c\n", 1, "whole topic level"),
            ("topic\n", 1, "needs a topic"),
        ] {
            let (n, message) = Acl::parse(text).unwrap_err();
            assert_eq!(n, line, "{text:?}: {message}");
            assert!(message.contains(expected), "{text:?}: {message}");
        }
        // `%c` outside a pattern is an ordinary level.
        let acl = Acl::parse("topic read a/%c\n").unwrap();
        assert!(acl.allows(&client("x", None), "a/%c", Want::Read));
        assert!(!acl.allows(&client("x", None), "a/x", Want::Read));
    }
}
