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

/// `s` as a shortstr, cut at a character boundary to 255 bytes. Names that arrived as
/// shortstrs never need it; error texts quoting them, and names that came over HTTP, can (a
/// longer one would make amq-protocol panic; RabbitMQ truncates reply texts the same way).
pub fn short(s: &str) -> amq_protocol::types::ShortString {
    amq_protocol::types::ShortString::from(&s[..fit(s, 255)])
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn fit(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_cuts_at_a_character_boundary() {
        let long = "é".repeat(200);
        assert_eq!(super::short(&long).as_str().len(), 254);
        assert_eq!(super::short("abc").as_str(), "abc");
    }
}
