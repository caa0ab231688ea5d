//! Deterministic trees of random (incompressible) files, from a seeded generator: the same
//! seed gives the same bytes on every machine.

use std::fs;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{IoContext, Result};

/// `count` files with sizes drawn uniformly from `min..=max` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub count: usize,
    pub min: u64,
    pub max: u64,
}

/// The shape of a generated tree: `dNNN/fNNNNN.bin`, `files_per_dir` files per directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    pub buckets: Vec<Bucket>,
    pub files_per_dir: usize,
    pub seed: u64,
}

/// What [`generate_tree`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenStats {
    pub files: usize,
    pub bytes: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

impl GenSpec {
    /// The benchmark data set: 20,000 files, about 400 MB, in 200 directories of 100 files:
    /// 12000 × 256 B–4 KiB, 6000 × 4–32 KiB, 1900 × 32–128 KiB, 100 × 0.5–1.8 MiB.
    pub fn benchmark(seed: u64) -> GenSpec {
        GenSpec {
            buckets: vec![
                Bucket {
                    count: 12000,
                    min: 256,
                    max: 4 * KIB,
                },
                Bucket {
                    count: 6000,
                    min: 4 * KIB,
                    max: 32 * KIB,
                },
                Bucket {
                    count: 1900,
                    min: 32 * KIB,
                    max: 128 * KIB,
                },
                Bucket {
                    count: 100,
                    min: 512 * KIB,
                    max: 1_843_200,
                },
            ],
            files_per_dir: 100,
            seed,
        }
    }

    /// The "many files" test data: a few thousand small files and a few large ones (about
    /// 6 MiB in all), quick to commit and pull.
    pub fn many_files(seed: u64) -> GenSpec {
        GenSpec {
            buckets: vec![
                Bucket {
                    count: 2500,
                    min: 16,
                    max: 2 * KIB,
                },
                Bucket {
                    count: 3,
                    min: MIB,
                    max: 2 * MIB,
                },
            ],
            files_per_dir: 100,
            seed,
        }
    }

    /// The LAN data set: 4,000 files, about 212 MB, in 40 directories of 100 files, closer to
    /// an OS update's mix than the benchmark set: 2000 × 256 B–8 KiB, 1200 × 8–64 KiB,
    /// 740 × 64–224 KiB, 60 × 0.5–1 MiB.
    pub fn lan(seed: u64) -> GenSpec {
        GenSpec {
            buckets: vec![
                Bucket {
                    count: 2000,
                    min: 256,
                    max: 8 * KIB,
                },
                Bucket {
                    count: 1200,
                    min: 8 * KIB,
                    max: 64 * KIB,
                },
                Bucket {
                    count: 740,
                    min: 64 * KIB,
                    max: 224 * KIB,
                },
                Bucket {
                    count: 60,
                    min: 512 * KIB,
                    max: MIB,
                },
            ],
            files_per_dir: 100,
            seed,
        }
    }

    /// Number of files the spec makes.
    pub fn file_count(&self) -> usize {
        self.buckets.iter().map(|b| b.count).sum()
    }

    /// Relative path of file number `index`.
    pub fn file_path(&self, index: usize) -> PathBuf {
        let per_dir = self.files_per_dir.max(1);
        PathBuf::from(format!("d{:03}/f{:05}.bin", index / per_dir, index))
    }
}

/// The file sizes `spec` gives, in file order, and the generator positioned to fill them.
fn draw_sizes(spec: &GenSpec) -> (Vec<u64>, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut sizes: Vec<u64> = spec
        .buckets
        .iter()
        .flat_map(|b| std::iter::repeat_n(*b, b.count))
        .map(|b| rng.gen_range(b.min..=b.max.max(b.min)))
        .collect();
    sizes.shuffle(&mut rng);
    (sizes, rng)
}

impl GenSpec {
    /// The size of every file the spec makes, in file order, without writing anything.
    pub fn sizes(&self) -> Vec<u64> {
        draw_sizes(self).0
    }
}

/// Writes the tree described by `spec` under `out` (created if needed).
pub fn generate_tree(out: &Path, spec: &GenSpec) -> Result<GenStats> {
    let (sizes, mut rng) = draw_sizes(spec);
    let mut buffer = Vec::new();
    let mut bytes = 0;
    for (index, size) in sizes.iter().enumerate() {
        let path = out.join(spec.file_path(index));
        if index % spec.files_per_dir.max(1) == 0 {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).at("create directory", dir)?;
            }
        }
        fill(&mut rng, &mut buffer, *size);
        fs::write(&path, &buffer).at("write", &path)?;
        bytes += size;
    }
    Ok(GenStats {
        files: sizes.len(),
        bytes,
    })
}

/// Rewrites `count` files of a tree made by [`generate_tree`] with new content of the same
/// size, chosen and filled from `seed`. Returns the relative paths it changed, for tests of
/// incremental pulls.
pub fn rewrite_files(out: &Path, spec: &GenSpec, count: usize, seed: u64) -> Result<Vec<PathBuf>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut indices: Vec<usize> = (0..spec.file_count()).collect();
    indices.shuffle(&mut rng);
    indices.truncate(count);
    indices.sort_unstable();
    let mut buffer = Vec::new();
    let mut changed = Vec::new();
    for index in indices {
        let rel = spec.file_path(index);
        let path = out.join(&rel);
        let size = fs::metadata(&path).at("stat", &path)?.len();
        fill(&mut rng, &mut buffer, size);
        fs::write(&path, &buffer).at("rewrite", &path)?;
        changed.push(rel);
    }
    Ok(changed)
}

/// `len` bytes from a linear congruential generator seeded with `seed`: incompressible
/// enough for a file's content, and cheap in an unoptimised test build.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

fn fill(rng: &mut ChaCha8Rng, buffer: &mut Vec<u8>, size: u64) {
    buffer.resize(usize::try_from(size).unwrap_or(usize::MAX), 0);
    rng.fill_bytes(buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_spec_is_twenty_thousand_files_of_about_400_mb() {
        let sizes = GenSpec::benchmark(42).sizes();
        assert_eq!(sizes.len(), 20_000);
        let total: u64 = sizes.iter().sum();
        assert!(
            (380_000_000..=440_000_000).contains(&total),
            "{total} bytes"
        );
        assert_eq!(sizes.iter().filter(|s| **s >= 512 * KIB).count(), 100);
        assert!(sizes.iter().filter(|s| **s <= 4 * KIB).count() >= 12_000);
        assert_eq!(GenSpec::benchmark(42).sizes(), sizes, "not deterministic");
        assert_eq!(
            GenSpec::benchmark(42).file_path(19_999),
            PathBuf::from("d199/f19999.bin")
        );
    }

    #[test]
    fn lan_spec_is_four_thousand_files_of_about_212_mb() {
        let sizes = GenSpec::lan(42).sizes();
        assert_eq!(sizes.len(), 4_000);
        let total: u64 = sizes.iter().sum();
        assert!(
            (202_000_000..=222_000_000).contains(&total),
            "{total} bytes"
        );
        assert_eq!(sizes.iter().filter(|s| **s >= 512 * KIB).count(), 60);
        assert_eq!(GenSpec::lan(42).sizes(), sizes, "not deterministic");
        assert_eq!(
            GenSpec::lan(42).file_path(3_999),
            PathBuf::from("d039/f03999.bin")
        );
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let spec = GenSpec {
            buckets: vec![Bucket {
                count: 12,
                min: 10,
                max: 300,
            }],
            files_per_dir: 5,
            seed: 7,
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let stats = generate_tree(a.path(), &spec).unwrap();
        generate_tree(b.path(), &spec).unwrap();
        assert_eq!(stats.files, 12);
        let mut total = 0;
        for index in 0..12 {
            let rel = spec.file_path(index);
            let left = fs::read(a.path().join(&rel)).unwrap();
            assert_eq!(
                left,
                fs::read(b.path().join(&rel)).unwrap(),
                "{}",
                rel.display()
            );
            assert!((10..=300).contains(&left.len()));
            total += left.len() as u64;
        }
        assert_eq!(total, stats.bytes);
        assert!(a.path().join("d002/f00011.bin").is_file());

        let other = tempfile::tempdir().unwrap();
        generate_tree(
            other.path(),
            &GenSpec {
                seed: 8,
                ..spec.clone()
            },
        )
        .unwrap();
        let rel = spec.file_path(0);
        assert_ne!(
            fs::read(a.path().join(&rel)).unwrap(),
            fs::read(other.path().join(&rel)).unwrap()
        );

        let before = fs::read(a.path().join(spec.file_path(3))).unwrap();
        let changed = rewrite_files(a.path(), &spec, 12, 99).unwrap();
        assert_eq!(changed.len(), 12);
        let after = fs::read(a.path().join(spec.file_path(3))).unwrap();
        assert_eq!(before.len(), after.len());
        assert_ne!(before, after);
    }
}
