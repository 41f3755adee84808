//! Password hashes as RabbitMQ's internal backend keeps them: base64 of a 4-byte random salt
//! followed by H(salt ++ password), H named by `hashing_algorithm`
//! (`rabbit_password_hashing_sha256`, the default; SHA-512 and MD5 accepted on import). An
//! empty hash is a user without a password: no password login at all.

use sha2::Digest;

/// RabbitMQ's `hashing_algorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hashing {
    #[default]
    Sha256,
    Sha512,
    Md5,
}

impl Hashing {
    pub fn parse(name: &str) -> Option<Hashing> {
        match name {
            "rabbit_password_hashing_sha256" => Some(Hashing::Sha256),
            "rabbit_password_hashing_sha512" => Some(Hashing::Sha512),
            "rabbit_password_hashing_md5" => Some(Hashing::Md5),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hashing::Sha256 => "rabbit_password_hashing_sha256",
            Hashing::Sha512 => "rabbit_password_hashing_sha512",
            Hashing::Md5 => "rabbit_password_hashing_md5",
        }
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            Hashing::Sha256 => run::<sha2::Sha256>(salt, password),
            Hashing::Sha512 => run::<sha2::Sha512>(salt, password),
            Hashing::Md5 => run::<md5::Md5>(salt, password),
        }
    }
}

/// A stored password: salt ++ digest (empty: no password).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswordHash {
    pub hashing: Hashing,
    pub bytes: Vec<u8>,
}

impl PasswordHash {
    /// Hash `password` with a fresh random salt.
    pub fn new(hashing: Hashing, password: &str) -> PasswordHash {
        let salt: [u8; 4] = rand::random();
        let mut bytes = salt.to_vec();
        bytes.extend(hashing.digest(&salt, password.as_bytes()));
        PasswordHash { hashing, bytes }
    }

    /// From RabbitMQ's `password_hash` (base64); None when it is not base64.
    pub fn from_base64(hashing: Hashing, encoded: &str) -> Option<PasswordHash> {
        Some(PasswordHash {
            hashing,
            bytes: super::base64::decode(encoded)?,
        })
    }

    pub fn to_base64(&self) -> String {
        super::base64::encode(&self.bytes)
    }

    /// Whether `password` is the one hashed here; constant time in the digest's content.
    pub fn verify(&self, password: &str) -> bool {
        if self.bytes.len() < 5 {
            return false; // no password set: password logins are refused
        }
        let (salt, digest) = self.bytes.split_at(4);
        let computed = self.hashing.digest(salt, password.as_bytes());
        computed.len() == digest.len()
            && computed
                .iter()
                .zip(digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_match_rabbitmq_layout() {
        for h in [Hashing::Sha256, Hashing::Sha512, Hashing::Md5] {
            let p = PasswordHash::new(h, "s3cret");
            assert!(p.verify("s3cret"));
            assert!(!p.verify("s3creT"));
            let back = PasswordHash::from_base64(h, &p.to_base64()).expect("base64");
            assert!(back.verify("s3cret"));
        }
        // salt 0x908dc60a, password "test12": RabbitMQ's documented example hash.
        let p = PasswordHash::from_base64(
            Hashing::Sha256,
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
        )
        .expect("base64");
        assert!(p.verify("test12"));
        assert!(!PasswordHash::default().verify(""));
    }
}
