//! Empty library target: lets `swapscope` name this crate as a build-dependency, so cargo rebuilds
//! the BPF object when it changes. The programs are in `main.rs` and its modules.
#![no_std]
