//! Raw kernel interfaces the storage layer calls directly: btrfs ioctls (subvolumes, snapshots,
//! send, inode lookups) and the loop-device ioctls.
//!
//! Neither `libc` nor `nix` defines these structures, so they are transcribed from
//! `<linux/btrfs.h>` and `<linux/loop.h>`; compile-time size checks pin them to the kernel ABI.
//! Everything here is `pub(crate)`: the safe wrappers live in `btrfs.rs`, `diff.rs` and
//! `provision.rs`.

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Error, Result};

/// `BTRFS_IOCTL_MAGIC`.
const BTRFS_MAGIC: u8 = 0x94;
/// `BTRFS_SUBVOL_NAME_MAX`: the longest name a v2 subvolume ioctl accepts.
pub(crate) const SUBVOL_NAME_MAX: usize = 4039;
/// `BTRFS_SUBVOL_RDONLY`, as used by SNAP_CREATE_V2 and SUBVOL_GETFLAGS/SETFLAGS.
pub(crate) const SUBVOL_RDONLY: u64 = 1 << 1;
/// `BTRFS_SEND_FLAG_NO_FILE_DATA`: send `update_extent` instead of file contents.
pub(crate) const SEND_FLAG_NO_FILE_DATA: u64 = 0x1;
/// The inode number of every subvolume's top directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub(crate) const SUBVOL_TOP_INO: u64 = 256;

/// `struct btrfs_ioctl_vol_args_v2` (4096 bytes). The first union is kept as `unused` (we never
/// pass qgroup inheritance), the second as `name`.
#[repr(C)]
pub(crate) struct VolArgsV2 {
    pub fd: i64,
    pub transid: u64,
    pub flags: u64,
    pub unused: [u64; 4],
    pub name: [u8; SUBVOL_NAME_MAX + 1],
}
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);

impl VolArgsV2 {
    /// Arguments naming the entry `name` (the last component of a path) with the given flags.
    pub fn named(name: &[u8], flags: u64, path: &Path) -> Result<Box<VolArgsV2>> {
        if name.is_empty() || name.len() > SUBVOL_NAME_MAX || name.contains(&0) || name.contains(&b'/') {
            return Err(Error::bad_request(
                "invalid_path",
                format!("{}: the last path component is not a valid subvolume name", path.display()),
            ));
        }
        let mut args =
            Box::new(VolArgsV2 { fd: 0, transid: 0, flags, unused: [0; 4], name: [0; SUBVOL_NAME_MAX + 1] });
        args.name[..name.len()].copy_from_slice(name);
        Ok(args)
    }
}

/// `struct btrfs_ioctl_vol_args` (v1, 4096 bytes), used only as the SNAP_DESTROY fallback.
#[repr(C)]
pub(crate) struct VolArgs {
    pub fd: i64,
    pub name: [u8; 4088],
}
const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);

/// `struct btrfs_ioctl_send_args`.
#[repr(C)]
pub(crate) struct SendArgs {
    pub send_fd: i64,
    pub clone_sources_count: u64,
    pub clone_sources: *const u64,
    pub parent_root: u64,
    pub flags: u64,
    pub version: u32,
    pub reserved: [u8; 28],
}
const _: () = assert!(std::mem::size_of::<SendArgs>() == 72);

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
pub(crate) struct InoLookupArgs {
    pub treeid: u64,
    pub objectid: u64,
    pub name: [u8; 4080],
}
const _: () = assert!(std::mem::size_of::<InoLookupArgs>() == 4096);

/// `struct btrfs_ioctl_ino_path_args`; `fspath` points at a `struct btrfs_data_container`.
#[repr(C)]
pub(crate) struct InoPathArgs {
    pub inum: u64,
    pub size: u64,
    pub reserved: [u64; 4],
    pub fspath: u64,
}
const _: () = assert!(std::mem::size_of::<InoPathArgs>() == 56);

/// `struct btrfs_ioctl_fs_info_args` (1024 bytes); only `fsid` is used.
#[repr(C)]
pub(crate) struct FsInfoArgs {
    pub max_id: u64,
    pub num_devices: u64,
    pub fsid: [u8; 16],
    pub nodesize: u32,
    pub sectorsize: u32,
    pub clone_alignment: u32,
    pub csum_type: u16,
    pub csum_size: u16,
    pub flags: u64,
    pub generation: u64,
    pub metadata_uuid: [u8; 16],
    pub reserved: [u8; 944],
}
const _: () = assert!(std::mem::size_of::<FsInfoArgs>() == 1024);

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
pub(crate) struct QuotaCtlArgs {
    pub cmd: u64,
    pub status: u64,
}
const _: () = assert!(std::mem::size_of::<QuotaCtlArgs>() == 16);

/// `BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA` (Linux 6.7+): quotas that account each extent to the
/// subvolume that wrote it, with no backref walks, so snapshots cost what they cost without quotas.
pub(crate) const QUOTA_CTL_ENABLE_SIMPLE_QUOTA: u64 = 4;

/// `BTRFS_QGROUP_LIMIT_MAX_RFER`: the `max_rfer` field of [`QgroupLimit`] is set.
pub(crate) const QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
/// The `max_rfer` value that removes a limit (the kernel's `CLEAR_VALUE`).
pub(crate) const QGROUP_LIMIT_CLEAR: u64 = u64::MAX;

/// `struct btrfs_qgroup_limit`.
#[repr(C)]
pub(crate) struct QgroupLimit {
    pub flags: u64,
    pub max_rfer: u64,
    pub max_excl: u64,
    pub rsv_rfer: u64,
    pub rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`; qgroup id 0 means "the subvolume of the fd".
#[repr(C)]
pub(crate) struct QgroupLimitArgs {
    pub qgroupid: u64,
    pub lim: QgroupLimit,
}
const _: () = assert!(std::mem::size_of::<QgroupLimitArgs>() == 48);

nix::ioctl_write_ptr!(btrfs_snap_destroy, BTRFS_MAGIC, 15, VolArgs);
nix::ioctl_readwrite!(btrfs_ino_lookup, BTRFS_MAGIC, 18, InoLookupArgs);
nix::ioctl_write_ptr!(btrfs_snap_create_v2, BTRFS_MAGIC, 23, VolArgsV2);
nix::ioctl_write_ptr!(btrfs_subvol_create_v2, BTRFS_MAGIC, 24, VolArgsV2);
nix::ioctl_read!(btrfs_subvol_getflags, BTRFS_MAGIC, 25, u64);
nix::ioctl_write_ptr!(btrfs_subvol_setflags, BTRFS_MAGIC, 26, u64);
nix::ioctl_read!(btrfs_fs_info, BTRFS_MAGIC, 31, FsInfoArgs);
nix::ioctl_readwrite!(btrfs_ino_paths, BTRFS_MAGIC, 35, InoPathArgs);
nix::ioctl_write_ptr!(btrfs_send, BTRFS_MAGIC, 38, SendArgs);
nix::ioctl_readwrite!(btrfs_quota_ctl, BTRFS_MAGIC, 40, QuotaCtlArgs);
nix::ioctl_read!(btrfs_qgroup_limit, BTRFS_MAGIC, 43, QgroupLimitArgs);
nix::ioctl_write_ptr!(btrfs_snap_destroy_v2, BTRFS_MAGIC, 63, VolArgsV2);

/// The subvolume (tree) id of the subvolume holding the open file `fd`.
pub(crate) fn subvolume_id(fd: &impl AsRawFd, path: &Path) -> Result<u64> {
    // treeid 0 + objectid 256 asks "which tree is this fd in"; it needs no privilege.
    let mut args = Box::new(InoLookupArgs { treeid: 0, objectid: SUBVOL_TOP_INO, name: [0; 4080] });
    // SAFETY: `args` is a valid, exclusively borrowed `btrfs_ioctl_ino_lookup_args`.
    unsafe { btrfs_ino_lookup(fd.as_raw_fd(), &mut *args) }
        .map_err(|e| Error::io(format!("looking up the subvolume id of {}", path.display()), e.into()))?;
    Ok(args.treeid)
}

/// The subvolume flags (`BTRFS_SUBVOL_RDONLY`, ...) of the subvolume whose top is open as `fd`.
pub(crate) fn subvolume_flags(fd: &impl AsRawFd, path: &Path) -> Result<u64> {
    let mut flags = 0u64;
    // SAFETY: the kernel writes one u64 into `flags`.
    unsafe { btrfs_subvol_getflags(fd.as_raw_fd(), &mut flags) }
        .map_err(|e| Error::io(format!("reading the subvolume flags of {}", path.display()), e.into()))?;
    Ok(flags)
}

/// The uuid of the btrfs filesystem holding the open file `fd`.
pub(crate) fn filesystem_id(fd: &impl AsRawFd, path: &Path) -> Result<[u8; 16]> {
    let mut args = Box::new(FsInfoArgs {
        max_id: 0,
        num_devices: 0,
        fsid: [0; 16],
        nodesize: 0,
        sectorsize: 0,
        clone_alignment: 0,
        csum_type: 0,
        csum_size: 0,
        flags: 0,
        generation: 0,
        metadata_uuid: [0; 16],
        reserved: [0; 944],
    });
    // SAFETY: `args` is a valid, exclusively borrowed `btrfs_ioctl_fs_info_args`.
    unsafe { btrfs_fs_info(fd.as_raw_fd(), &mut *args) }
        .map_err(|e| Error::io(format!("reading the btrfs filesystem id of {}", path.display()), e.into()))?;
    Ok(args.fsid)
}

/// `LO_FLAGS_AUTOCLEAR`: the kernel detaches the loop device when its last user closes it.
pub(crate) const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
pub(crate) struct LoopInfo64 {
    pub lo_device: u64,
    pub lo_inode: u64,
    pub lo_rdevice: u64,
    pub lo_offset: u64,
    pub lo_sizelimit: u64,
    pub lo_number: u32,
    pub lo_encrypt_type: u32,
    pub lo_encrypt_key_size: u32,
    pub lo_flags: u32,
    pub lo_file_name: [u8; 64],
    pub lo_crypt_name: [u8; 64],
    pub lo_encrypt_key: [u8; 32],
    pub lo_init: [u64; 2],
}
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);

/// `struct loop_config`, the argument of LOOP_CONFIGURE.
#[repr(C)]
pub(crate) struct LoopConfig {
    pub fd: u32,
    pub block_size: u32,
    pub info: LoopInfo64,
    pub reserved: [u64; 8],
}
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopConfig {
    pub fn zeroed() -> LoopConfig {
        LoopConfig {
            fd: 0,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: 0,
                lo_file_name: [0; 64],
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        }
    }
}

// The loop ioctls predate the _IOC encoding: their numbers are plain constants ("bad" ioctls).
nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
