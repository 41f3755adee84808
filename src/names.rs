//! Server-generated names, shaped like RabbitMQ's (`amq.gen-…`, `amq.ctag-…`).

use rand::Rng;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `len` random URL-safe base64 characters.
pub fn random_token(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

pub fn queue_name() -> String {
    format!("amq.gen-{}", random_token(22))
}

pub fn consumer_tag() -> String {
    format!("amq.ctag-{}", random_token(22))
}
