//! Who may do what: users with RabbitMQ's password hashes and tags, their permissions per vhost
//! (configure / write / read regexes), topic permissions and user limits, and the SASL
//! responses they log in with. A leaf: it keeps the registry in memory; the broker makes each
//! change durable (as `store::Definition`s) before it applies it here.

pub mod base64;
pub mod password;
mod permissions;
pub mod sasl;
mod users;

pub use password::{Hashing, PasswordHash};
pub use permissions::{Kind, Perm, Permission, TopicPermission};
pub use sasl::{parse_response, Login};
pub use users::{Refused, User, UserLimits, Users};
