//! apt: a private sources list and state, URIs copied from the host's own configuration

use super::*;

pub struct Apt {
    pub(super) dir: PathBuf,
    pub(super) codename: String,
    /// The Debian architecture whose packages it lists (the host's, or another one's kernels
    /// and busybox for the VM tests).
    pub(super) arch: Arch,
}

pub(super) const HOST_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

impl Apt {
    pub(super) fn new(dir: &Path, arch: Arch) -> Result<Self> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let text = fs::read_to_string(HOST_SOURCES)
            .with_context(|| format!("reading {HOST_SOURCES} (its URIs are reused)"))?;
        let (uri, signed_by) = main_archive(&text).with_context(|| {
            format!(
                "{HOST_SOURCES} names no main Debian archive (a stanza with non-security suites)"
            )
        })?;
        let opt = signed_by.map_or(String::new(), |k| format!("[signed-by={k}] "));
        let mut list = String::from("# written by cargo xtask vm; URIs copied from ");
        list.push_str(HOST_SOURCES);
        list.push('\n');
        let mut suites: Vec<&str> = SPECS
            .iter()
            .flat_map(|s| s.suites.iter().copied())
            .collect();
        suites.dedup();
        for s in suites {
            list.push_str(&format!("deb {opt}{uri} {s} main\n"));
        }
        write_sources(dir, &list)?;
        Ok(Apt {
            dir: dir.to_path_buf(),
            codename: String::new(),
            arch,
        })
    }

    /// A private apt state that sees everything the host's own sources list (every deb822
    /// stanza of it) and also `<codename>-backports` of the host's main archive: for installing
    /// host packages without replacing backported ones the host already has.
    pub fn host_with_backports(dir: &Path) -> Result<Self> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let text = fs::read_to_string(HOST_SOURCES)
            .with_context(|| format!("reading {HOST_SOURCES} (its URIs are reused)"))?;
        let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
        let codename = os
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .map(|c| c.trim_matches('"').to_string())
            .filter(|c| !c.is_empty())
            .context("/etc/os-release names no VERSION_CODENAME")?;
        let (uri, signed_by) = main_archive(&text).with_context(|| {
            format!(
                "{HOST_SOURCES} names no main Debian archive (a stanza with non-security suites)"
            )
        })?;
        let mut list =
            String::from("# written by cargo xtask; the host's sources plus backports\n");
        for st in deb_stanzas(&text) {
            let comps = st.field("Components").unwrap_or_else(|| "main".into());
            let opt = st
                .field("Signed-By")
                .map_or(String::new(), |k| format!("[signed-by={k}] "));
            for u in st.uris.split_whitespace() {
                for su in st.suites.split_whitespace() {
                    list.push_str(&format!("deb {opt}{u} {su} {comps}\n"));
                }
            }
        }
        let opt = signed_by.map_or(String::new(), |k| format!("[signed-by={k}] "));
        list.push_str(&format!("deb {opt}{uri} {codename}-backports main\n"));
        write_sources(dir, &list)?;
        Ok(Apt {
            dir: dir.to_path_buf(),
            codename,
            arch: Arch::host(),
        })
    }

    /// The host's release codename (`bookworm`), for [`Apt::host_with_backports`].
    pub fn codename(&self) -> &str {
        &self.codename
    }

    pub fn opts(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oAPT::Sandbox::User=root".into(),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
            format!("-oAPT::Architecture={}", self.arch.deb()),
            format!("-oAPT::Architectures={}", self.arch.deb()),
        ]
    }

    /// `apt-get update` when the private lists are missing or older than a day.
    pub fn update_if_stale(&self) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < Duration::from_secs(24 * 3600));
        if fresh {
            return Ok(());
        }
        step("apt-get update (private state under the VM cache)");
        let r = output(
            Command::new("apt-get")
                .args(self.opts())
                .args(["-q", "update"]),
        );
        match r {
            Ok(_) => fs::write(&stamp, "")?,
            Err(e) if stamp.exists() || self.has_lists() => {
                eprintln!("xtask: apt-get update failed, using the cached lists: {e:#}");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    pub(super) fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("lists")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
    }

    pub(super) fn cache(&self, args: &[&str]) -> Result<String> {
        output(Command::new("apt-cache").args(self.opts()).args(args))
    }
}

/// Writes the private sources list; a changed list makes the next update run.
pub(super) fn write_sources(dir: &Path, list: &str) -> Result<()> {
    let path = dir.join("sources.list");
    if fs::read_to_string(&path).ok().as_deref() != Some(list) {
        fs::write(&path, list)?;
        let _ = fs::remove_file(dir.join("updated"));
    }
    Ok(())
}

/// One `Types: deb` stanza of a deb822 sources file.
pub(super) struct Stanza<'a> {
    pub(super) text: &'a str,
    pub(super) uris: String,
    pub(super) suites: String,
}

impl Stanza<'_> {
    pub(super) fn field(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    }
}

/// The `deb` stanzas (with URIs and suites) of a deb822 sources file.
pub(super) fn deb_stanzas(deb822: &str) -> impl Iterator<Item = Stanza<'_>> {
    deb822.split("\n\n").filter_map(|text| {
        let mut st = Stanza {
            text,
            uris: String::new(),
            suites: String::new(),
        };
        st.uris = st.field("URIs")?;
        st.suites = st.field("Suites")?;
        if st
            .field("Types")
            .is_some_and(|t| !t.split_whitespace().any(|w| w == "deb"))
        {
            return None;
        }
        Some(st)
    })
}

/// The first URI and its keyring from the deb822 stanza that serves the main (non-security)
/// suites.
pub(super) fn main_archive(deb822: &str) -> Option<(String, Option<String>)> {
    deb_stanzas(deb822).find_map(|st| {
        let uri = st.uris.split_whitespace().next()?;
        st.suites
            .split_whitespace()
            .any(|s| !s.contains("security"))
            .then(|| (uri.trim_end_matches('/').to_string(), st.field("Signed-By")))
    })
}

/// A resolved kernel: its release (`uname -r`) and the packages (`name=version`) to fetch.
pub(super) struct Resolved {
    pub(super) release: String,
    pub(super) version: String,
    pub(super) packages: Vec<String>,
}

pub(super) fn dpkg_newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// The package named `prefix…` in a `Depends:` field, with the version it pins.
pub(super) fn depends_on(show: &str, prefix: &str) -> Option<(String, Option<String>)> {
    let deps = show.lines().find_map(|l| l.strip_prefix("Depends:"))?;
    deps.split(',').map(str::trim).find_map(|d| {
        let d = d.split('|').next()?.trim();
        let (name, rest) = d.split_once(' ').unwrap_or((d, ""));
        name.starts_with(prefix).then(|| {
            let ver = rest
                .trim()
                .strip_prefix("(=")
                .and_then(|v| v.strip_suffix(')'))
                .map(|v| v.trim().to_string());
            (name.to_string(), ver)
        })
    })
}

pub(super) fn resolve(spec: &Spec, apt: &Apt) -> Result<Resolved> {
    let meta = format!("linux-image-{}", apt.arch.deb());
    let madison = apt.cache(&["madison", &meta])?;
    let mut best: Option<String> = None;
    for line in madison.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(ver), Some(src)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let suite = src
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_default();
        if spec.suites.contains(&suite)
            && ver.starts_with(spec.prefix)
            && best.as_deref().is_none_or(|b| dpkg_newer(ver, b))
        {
            best = Some((*ver).to_string());
        }
    }
    let meta_ver = best.with_context(|| {
        format!(
            "no {meta} {}* in {} (apt-cache madison)",
            spec.prefix,
            spec.suites.join("/")
        )
    })?;
    let show = apt.cache(&["show", &format!("{meta}={meta_ver}")])?;
    let (image, image_ver) = depends_on(&show, "linux-image-")
        .with_context(|| format!("{meta} depends on no linux-image-<release>"))?;
    let image_ver = image_ver.unwrap_or_else(|| meta_ver.clone());
    let release = image
        .strip_prefix("linux-image-")
        .unwrap_or(&image)
        .to_string();
    let show = apt.cache(&["show", &format!("{image}={image_ver}")])?;
    // Debian 7.x splits the kernel: linux-image-<rel> is a meta package over linux-binary-<rel>
    // (vmlinuz) and linux-modules-<rel>.
    let packages = if depends_on(&show, "linux-binary-").is_some() {
        vec![
            format!("linux-binary-{release}={image_ver}"),
            format!("linux-modules-{release}={image_ver}"),
        ]
    } else {
        vec![format!("{image}={image_ver}")]
    };
    Ok(Resolved {
        release,
        version: image_ver,
        packages,
    })
}

/// Downloads (once) and extracts (once) the packages; returns the extracted tree.
pub(super) fn fetch_tree(r: &Resolved, apt: &Apt, cache: &Path) -> Result<PathBuf> {
    let debs = cache.join("debs").join(&r.release);
    let done = debs.join(".complete");
    if fs::read_to_string(&done).ok().as_deref() != Some(r.packages.join("\n").as_str()) {
        step(&format!("downloading {}", r.packages.join(" ")));
        let _ = fs::remove_dir_all(&debs);
        fs::create_dir_all(&debs)?;
        // Not `run`: apt-get download writes into its working directory.
        let mut cmd = Command::new("apt-get");
        cmd.args(apt.opts())
            .args(["-q", "download"])
            .args(&r.packages)
            .current_dir(&debs);
        let status = cmd.status().context("starting apt-get download")?;
        ensure!(status.success(), "{cmd:?} failed with {status}");
        fs::write(&done, r.packages.join("\n"))?;
    }
    let tree = cache.join("trees").join(&r.release);
    // The marker names the packages: a new Debian revision of the same release re-extracts.
    let marker = tree.join(".extracted");
    if fs::read_to_string(&marker).ok().as_deref() != Some(r.packages.join("\n").as_str()) {
        step(&format!("extracting {}", r.release));
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(&tree)?;
        for e in fs::read_dir(&debs)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "deb") {
                run(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&tree))?;
            }
        }
        fs::write(&marker, r.packages.join("\n"))?;
    }
    Ok(tree)
}

/// Another architecture's static busybox for the guest (its newest `busybox-static` in the
/// suites, downloaded and extracted once): the path of its binary.
pub(super) fn foreign_busybox(apt: &Apt, cache: &Path) -> Result<PathBuf> {
    let show = apt.cache(&["show", "--no-all-versions", "busybox-static"])?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .context("apt-cache show busybox-static gave no version")?
        .trim()
        .to_string();
    let r = Resolved {
        release: format!("busybox-static-{}", apt.arch.deb()),
        packages: vec![format!("busybox-static={version}")],
        version,
    };
    let tree = fetch_tree(&r, apt, cache)?;
    first_existing([tree.join("usr/bin/busybox"), tree.join("bin/busybox")])
        .with_context(|| format!("no busybox in {}", tree.display()))
}

pub(super) fn first_existing(cands: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    cands.into_iter().find(|p| p.exists())
}
