//! Fast pseudo-random bytes for test content.
//!
//! Content must be incompressible and different on every write, so that neither
//! compression nor deduplication makes a measurement look better than real data would.
//! xoshiro256** produces several GB/s on one core, which keeps generating 100 MiB out of
//! the way of the figures. The same seed always gives the same bytes, so a file's expected
//! content can be regenerated for checking instead of kept in memory.

/// A xoshiro256** generator.
#[derive(Debug, Clone)]
pub struct RandomBytes {
    state: [u64; 4],
}

impl RandomBytes {
    /// A generator whose output depends only on `seed`.
    pub fn seeded(seed: u64) -> RandomBytes {
        // splitmix64 spreads the seed over the whole state, as the xoshiro authors advise.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        RandomBytes {
            state: [next(), next(), next(), next()],
        }
    }

    /// A generator seeded from the clock and the process id: different on every run.
    pub fn from_clock() -> RandomBytes {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        RandomBytes::seeded(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// `len` fresh bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.fill(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(
            RandomBytes::seeded(7).bytes(100),
            RandomBytes::seeded(7).bytes(100)
        );
        assert_ne!(
            RandomBytes::seeded(7).bytes(100),
            RandomBytes::seeded(8).bytes(100)
        );
    }

    #[test]
    fn successive_calls_differ_and_lengths_are_exact() {
        let mut rng = RandomBytes::seeded(1);
        let a = rng.bytes(13);
        let b = rng.bytes(13);
        assert_eq!(a.len(), 13);
        assert_ne!(a, b);
    }

    #[test]
    fn output_is_not_compressible_by_byte_frequency() {
        // Every byte value appears close to len/256 times.
        let data = RandomBytes::seeded(3).bytes(1 << 20);
        let mut counts = [0u32; 256];
        for b in &data {
            counts[usize::from(*b)] += 1;
        }
        let expected = (1 << 20) / 256;
        assert!(counts.iter().all(|c| c.abs_diff(expected) < expected / 10));
    }
}
