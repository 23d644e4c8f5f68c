//! mTHP sizes as the kernel names them (`hugepages-<N>kB`), parsed without touching sysfs.

/// Size in kB of an mTHP directory name `hugepages-<N>kB`.
pub fn mthp_size_kb(dir_name: &str) -> Option<u64> {
    dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()
}

/// Folio order of an mTHP size (4 KiB pages).
pub fn order_of_size_kb(kb: u64) -> Option<u8> {
    if kb < 4 || !kb.is_power_of_two() {
        return None;
    }
    Some((kb / 4).trailing_zeros() as u8)
}

/// Splits a counter name `hugepages-<N>kB/<stat>` into (order, stat).
pub fn parse_mthp_counter(name: &str) -> Option<(u8, &str)> {
    let (dir, stat) = name.split_once('/')?;
    Some((order_of_size_kb(mthp_size_kb(dir)?)?, stat))
}
