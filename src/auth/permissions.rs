//! Permissions as RabbitMQ's internal backend checks them: three regexes per user and vhost,
//! searched (not anchored) in the resource name; an empty regex allows only the empty name;
//! the default exchange is checked as `amq.default`. Topic permissions: per exchange, write and
//! read regexes on routing keys, with `{username}` and `{vhost}` expanded.

use regex::Regex;

/// configure / write / read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn name(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

/// What a permission applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Exchange,
    Queue,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exchange => "exchange",
            Kind::Queue => "queue",
        }
    }
}

/// One regex, kept with its source (which is what the API and definitions show).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    re: Regex,
}

/// Regexes from a peer are bounded: a pattern compiles to at most this many bytes.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, String> {
        // rabbit_auth_backend_internal: "" means "^$" (nothing but the empty name).
        let effective = if source.is_empty() { "^$" } else { source };
        let re = regex::RegexBuilder::new(effective)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex '{source}': {e}"))?;
        Ok(Pattern {
            source: source.to_string(),
            re,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.re.is_match(name)
    }
}

/// A user's permissions in one vhost.
#[derive(Debug, Clone)]
pub struct Permission {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, String> {
        Ok(Permission {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }

    pub fn allows(&self, perm: Perm, kind: Kind, name: &str) -> bool {
        let name = match (kind, name) {
            (Kind::Exchange, "") => "amq.default",
            _ => name,
        };
        match perm {
            Perm::Configure => self.configure.matches(name),
            Perm::Write => self.write.matches(name),
            Perm::Read => self.read.matches(name),
        }
    }
}

/// A user's topic permissions on one exchange of one vhost. The regexes compile with
/// `{username}` and `{vhost}` already expanded (both are fixed by where the permission lives).
#[derive(Debug, Clone)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: Pattern,
    pub read: Pattern,
}

impl TopicPermission {
    pub fn new(
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<TopicPermission, String> {
        let compile = |source: &str| {
            let expanded = source.replace("{username}", user).replace("{vhost}", vhost);
            let mut p = Pattern::new(&expanded)?;
            p.source = source.to_string();
            Ok::<_, String>(p)
        };
        Ok(TopicPermission {
            exchange: exchange.to_string(),
            write: compile(write)?,
            read: compile(read)?,
        })
    }

    pub fn allows(&self, perm: Perm, routing_key: &str) -> bool {
        match perm {
            Perm::Write => self.write.matches(routing_key),
            _ => self.read.matches(routing_key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_regex_rules() {
        let p = Permission::new("", "^amq\\.default$", "q").expect("valid");
        assert!(p.allows(Perm::Configure, Kind::Queue, ""));
        assert!(!p.allows(Perm::Configure, Kind::Queue, "x"));
        assert!(p.allows(Perm::Write, Kind::Exchange, ""));
        assert!(!p.allows(Perm::Write, Kind::Exchange, "amq.direct"));
        // searched, not anchored
        assert!(p.allows(Perm::Read, Kind::Queue, "my-q-1"));
        assert!(Permission::new("(", ".*", ".*").is_err());
        let t =
            TopicPermission::new("bob", "/", "amq.topic", "^{username}\\.", ".*").expect("valid");
        assert!(t.allows(Perm::Write, "bob.x"));
        assert!(!t.allows(Perm::Write, "alice.x"));
        assert_eq!(t.write.source, "^{username}\\.");
    }
}
