// SPDX-License-Identifier: GPL-2.0

//! The entry points of the Rust engine: the C functions of
//! `mm/migrate_device.c` call these while debugfs `migrate_device/engine`
//! selects a Rust engine. Each checks its arguments, makes the views of the
//! arrays once and runs the phases on them; these files and the bindings
//! are the engine's only unsafe code.

pub mod device;
pub mod finalize;
pub mod pages;
pub mod setup;
