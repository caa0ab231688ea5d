//! What udev knows about a block device: filesystem, label, bus and whether it is removable.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{path} is not a block device; pass the device node, for example /dev/sdb1")]
    NotBlock { path: PathBuf },
    #[error("cannot look up {path}: {source}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("udev does not know {path}: {source}")]
    Udev {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A block device carrying a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub devnode: PathBuf,
    pub major: u32,
    pub minor: u32,
    /// `ID_FS_TYPE`, `ID_FS_UUID`, `ID_FS_LABEL`, `ID_BUS`: absent when udev has not probed
    /// the device (its database is empty without `systemd-udevd`).
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    pub bus: Option<String>,
    /// Removable media: the disk says so, or it sits on a hot-plug bus, or it is an SD card.
    pub removable: bool,
}

fn text(value: Option<&OsStr>) -> Option<String> {
    value
        .and_then(OsStr::to_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Looks `devnode` up in udev.
pub fn probe(devnode: &Path) -> Result<BlockDevice, DeviceError> {
    let stat = rustix::fs::stat(devnode).map_err(|e| DeviceError::Stat {
        path: devnode.to_path_buf(),
        source: e.into(),
    })?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::BlockDevice {
        return Err(DeviceError::NotBlock {
            path: devnode.to_path_buf(),
        });
    }
    let major = rustix::fs::major(stat.st_rdev);
    let minor = rustix::fs::minor(stat.st_rdev);
    let device =
        udev::Device::from_devnum(udev::DeviceType::Block, stat.st_rdev).map_err(|source| {
            DeviceError::Udev {
                path: devnode.to_path_buf(),
                source,
            }
        })?;
    // The label as udev decodes it (`ID_FS_LABEL` has unsafe characters replaced).
    let label = text(device.property_value("ID_FS_LABEL_ENC"))
        .map(|encoded| decode_udev_escapes(&encoded))
        .or_else(|| text(device.property_value("ID_FS_LABEL")));
    let bus = text(device.property_value("ID_BUS"));
    let disk = if device.devtype() == Some(OsStr::new("disk")) {
        Some(device.clone())
    } else {
        device
            .parent_with_subsystem_devtype("block", "disk")
            .ok()
            .flatten()
    };
    let disk_removable = disk
        .as_ref()
        .and_then(|disk| text(disk.attribute_value("removable")))
        .is_some_and(|v| v == "1");
    let hotplug_bus = matches!(bus.as_deref(), Some("usb" | "ieee1394"));
    let sd_card = device
        .parent_with_subsystem("mmc")
        .ok()
        .flatten()
        .and_then(|mmc| text(mmc.attribute_value("type")))
        .is_some_and(|kind| kind == "SD");
    Ok(BlockDevice {
        devnode: devnode.to_path_buf(),
        major,
        minor,
        fs_type: text(device.property_value("ID_FS_TYPE")),
        uuid: text(device.property_value("ID_FS_UUID")),
        label,
        bus,
        removable: disk_removable || hotplug_bus || sd_card,
    })
}

/// udev writes `\xNN` for bytes it will not store verbatim.
fn decode_udev_escapes(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 4 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(hex, 16) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_labels() {
        assert_eq!(decode_udev_escapes("MY\\x20STICK"), "MY STICK");
        assert_eq!(decode_udev_escapes("a\\x2fb\\xzz"), "a/b\\xzz");
        assert_eq!(decode_udev_escapes("end\\x2"), "end\\x2");
    }

    #[test]
    fn refuses_what_is_not_a_block_device() {
        assert!(matches!(
            probe(Path::new("/dev/null")),
            Err(DeviceError::NotBlock { .. })
        ));
        assert!(matches!(
            probe(Path::new("/dev/does-not-exist")),
            Err(DeviceError::Stat { .. })
        ));
    }
}
