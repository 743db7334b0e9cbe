//! API keys: `abx_<id>_<secret>`. The id is public (listed, used to revoke); the store
//! keeps only the blake3 hash of the whole key.

/// A freshly generated key; `key` is shown to the user once and never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub key: String,
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(len: usize) -> String {
    // Bytes of 252 and above are skipped so that `% 36` stays unbiased.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        for byte in bytes.into_iter().filter(|b| *b < 252).take(len - out.len()) {
            out.push(ALPHABET[(byte % 36) as usize] as char);
        }
    }
    out
}

pub fn generate() -> NewKey {
    let id = random_string(8);
    let key = format!("abx_{id}_{}", random_string(40));
    NewKey { id, key }
}

/// What the store keeps of a key.
pub fn hash(key: &str) -> [u8; 32] {
    *blake3::hash(key.as_bytes()).as_bytes()
}

/// The public id inside a key, if it has the right shape.
pub fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("abx_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 8 && !secret.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_carry_their_id() {
        let a = generate();
        let b = generate();
        assert_ne!(a.key, b.key);
        assert_eq!(id_of(&a.key), Some(a.id.as_str()));
        assert_eq!(a.key.len(), 4 + 8 + 1 + 40);
        assert_ne!(hash(&a.key), hash(&b.key));
        assert_eq!(id_of("nope"), None);
    }
}
