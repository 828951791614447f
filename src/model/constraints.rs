//! Allocation by constraints, MAAS-style: which Ready machines match, and which one to take.
//! Pure: the service runs it over its machine index and then commits the choice.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::machine::{Disk, Machine};
use super::status::Status;

/// What a user asks of a machine. Every field is optional; an empty set matches any Ready machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Take exactly the machine with this host name or FQDN, if it is Ready.
    #[serde(default)]
    pub name: Option<String>,
    /// Take exactly this machine, if it is Ready.
    #[serde(default)]
    pub system_id: Option<String>,
    /// Architecture, "amd64" or "amd64/generic".
    #[serde(default)]
    pub arch: Option<String>,
    /// At least this many CPU cores.
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// At least this much memory, in MiB.
    #[serde(default)]
    pub mem: Option<u64>,
    /// The machine must carry every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The machine must carry none of these tags.
    #[serde(default)]
    pub not_tags: Vec<String>,
    /// The machine must be in this zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// The machine must be in none of these zones.
    #[serde(default)]
    pub not_in_zone: Vec<String>,
    /// The machine must be in this resource pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// The machine must be in none of these pools.
    #[serde(default)]
    pub not_in_pool: Vec<String>,
    /// Disks, as MAAS and Juju send them: `label:GB(tag,...),...`, e.g. `root:20(ssd),data:100`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::storage_or_null")]
    pub storage: Option<String>,
    /// Answer which machine would be taken, without taking it.
    #[serde(default)]
    pub dry_run: bool,
    /// A note recorded with the allocation event; not a constraint.
    #[serde(default)]
    pub comment: Option<String>,
}

/// One disk asked for by a storage constraint.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskWish {
    /// Label of the disk as asked (`root`, `data`); its position in the list when none is given.
    pub label: String,
    /// Minimum size in bytes (GB are 10^9 bytes, as MAAS counts them).
    pub min_bytes: u64,
    /// Tags the disk must all carry (`ssd`).
    pub tags: Vec<String>,
}

/// Why a storage constraint could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstraintError {
    /// The text is not `label:GB(tag,...),...`.
    #[error("invalid storage constraint {text:?}: {why}")]
    BadStorage {
        /// The storage constraint as given.
        text: String,
        /// Which part is wrong, and how.
        why: String,
    },
}

/// Parses `label:GB(tag,tag),GB,...`. The label is optional; the size may be fractional.
pub fn parse_storage(text: &str) -> Result<Vec<DiskWish>, ConstraintError> {
    let bad = |why: &str| ConstraintError::BadStorage {
        text: text.to_string(),
        why: why.to_string(),
    };
    let mut wishes = Vec::new();
    // Split on commas that are not inside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(bad("unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(bad("unbalanced parentheses"));
    }
    parts.push(&text[start..]);
    for (index, part) in parts.into_iter().enumerate() {
        let part = part.trim();
        if part.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err(bad("empty disk entry"));
        }
        let (label, rest) = match part.split_once(':') {
            Some((l, r)) => (l.trim().to_string(), r.trim()),
            None => (index.to_string(), part),
        };
        let (size_text, tags) = match rest.split_once('(') {
            Some((size, tags)) => {
                let tags = tags
                    .strip_suffix(')')
                    .ok_or_else(|| bad("tags must end with ')'"))?;
                let tags: Vec<String> = tags
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                (size.trim(), tags)
            }
            None => (rest, Vec::new()),
        };
        let gb: f64 = size_text
            .parse()
            .map_err(|_| bad(&format!("size {size_text:?} is not a number of GB")))?;
        if !gb.is_finite() || gb < 0.0 {
            return Err(bad(&format!(
                "size {size_text:?} must be a positive number of GB"
            )));
        }
        wishes.push(DiskWish {
            label,
            min_bytes: (gb * 1e9) as u64,
            tags,
        });
    }
    Ok(wishes)
}

/// Whether every wish can be given its own disk.
pub fn disks_satisfy(disks: &[Disk], wishes: &[DiskWish]) -> bool {
    disk_assignment(disks, wishes).is_some()
}

/// Which disk (index into `disks`) each wish gets, in the order of `wishes`, or None when they
/// cannot all be given their own disk. Small backtracking search: machines have few disks. The
/// MAAS face reports the assignment to Juju (constraints_by_type.storage).
pub(crate) fn disk_assignment(disks: &[Disk], wishes: &[DiskWish]) -> Option<Vec<usize>> {
    fn fits(disk: &Disk, wish: &DiskWish) -> bool {
        disk.size_bytes >= wish.min_bytes
            && wish.tags.iter().all(|t| disk.tags.iter().any(|d| d == t))
    }
    fn search(
        disks: &[Disk],
        wishes: &[DiskWish],
        used: &mut Vec<bool>,
        chosen: &mut Vec<usize>,
    ) -> bool {
        let Some((wish, rest)) = wishes.split_first() else {
            return true;
        };
        for (i, disk) in disks.iter().enumerate() {
            if !used[i] && fits(disk, wish) {
                used[i] = true;
                chosen.push(i);
                if search(disks, rest, used, chosen) {
                    return true;
                }
                chosen.pop();
                used[i] = false;
            }
        }
        false
    }
    if wishes.len() > disks.len() {
        return None;
    }
    let mut chosen = Vec::with_capacity(wishes.len());
    search(disks, wishes, &mut vec![false; disks.len()], &mut chosen).then_some(chosen)
}

fn arch_matches(machine_arch: &str, wanted: &str) -> bool {
    let wanted = wanted.trim();
    machine_arch == wanted
        || machine_arch.split('/').next() == Some(wanted)
        || (wanted.ends_with("/generic")
            && machine_arch.split('/').next() == wanted.split('/').next())
}

/// One filter of the allocation chain: its name (for the error) and its test.
type Filter<'a> = (String, Box<dyn Fn(&Machine) -> bool + 'a>);

/// The constraints as a chain of named filters, in the order their failure is reported.
fn filters<'a>(c: &'a Constraints, storage: &'a [DiskWish]) -> Vec<Filter<'a>> {
    let mut f: Vec<Filter<'a>> = Vec::new();
    if let Some(id) = &c.system_id {
        f.push((
            format!("system_id={id}"),
            Box::new(move |m| &m.system_id == id),
        ));
    }
    if let Some(name) = &c.name {
        f.push((
            format!("name={name}"),
            Box::new(move |m| &m.hostname == name || m.fqdn() == *name),
        ));
    }
    if let Some(arch) = &c.arch {
        f.push((
            format!("arch={arch}"),
            Box::new(move |m| arch_matches(&m.architecture, arch)),
        ));
    }
    if let Some(zone) = &c.zone {
        f.push((format!("zone={zone}"), Box::new(move |m| &m.zone == zone)));
    }
    if !c.not_in_zone.is_empty() {
        f.push((
            format!("not_in_zone={}", c.not_in_zone.join(",")),
            Box::new(move |m| !c.not_in_zone.contains(&m.zone)),
        ));
    }
    if let Some(pool) = &c.pool {
        f.push((format!("pool={pool}"), Box::new(move |m| &m.pool == pool)));
    }
    if !c.not_in_pool.is_empty() {
        f.push((
            format!("not_in_pool={}", c.not_in_pool.join(",")),
            Box::new(move |m| !c.not_in_pool.contains(&m.pool)),
        ));
    }
    for tag in &c.tags {
        f.push((
            format!("tags={tag}"),
            Box::new(move |m| m.tags.contains(tag)),
        ));
    }
    if !c.not_tags.is_empty() {
        f.push((
            format!("not_tags={}", c.not_tags.join(",")),
            Box::new(move |m| !c.not_tags.iter().any(|t| m.tags.contains(t))),
        ));
    }
    if let Some(n) = c.cpu_count {
        f.push((
            format!("cpu_count>={n}"),
            Box::new(move |m| m.cpu_count >= n),
        ));
    }
    if let Some(mem) = c.mem {
        f.push((
            format!("mem>={mem}MiB"),
            Box::new(move |m| m.memory_mib >= mem),
        ));
    }
    if !storage.is_empty() {
        let text = c.storage.clone().unwrap_or_default();
        f.push((
            format!("storage={text}"),
            Box::new(move |m| disks_satisfy(&m.disks, storage)),
        ));
    }
    f
}

/// Why nothing could be allocated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoMatch {
    /// There is no Ready machine at all, whatever the constraints.
    #[error("no machine is Ready")]
    NoneReady,
    #[error(
        "no Ready machine matches {constraint} ({candidates} Ready machine(s) matched the constraints before it)"
    )]
    /// Ready machines exist, but none passes `constraint`, the first filter that left none.
    Unmatched {
        /// The constraint that no remaining machine met, as `key=value`.
        constraint: String,
        /// How many Ready machines passed the filters before `constraint`.
        candidates: usize,
    },
    /// The constraints themselves could not be read (a bad storage constraint).
    #[error(transparent)]
    Invalid(#[from] ConstraintError),
}

/// The order in which machines are preferred: the smallest that fits first, so the big machines
/// stay free for big asks. Ties are broken by system_id so the choice is deterministic.
pub fn size_key(m: &Machine) -> (u32, u64, u64, &str) {
    (
        m.cpu_count,
        m.memory_mib,
        m.storage_bytes(),
        m.system_id.as_str(),
    )
}

/// Every Ready machine that matches, smallest first; or which constraint left no candidates.
pub fn candidates<'m, I>(machines: I, c: &Constraints) -> Result<Vec<&'m Machine>, NoMatch>
where
    I: IntoIterator<Item = &'m Machine>,
{
    let storage = match &c.storage {
        Some(text) => parse_storage(text)?,
        None => Vec::new(),
    };
    let mut set: Vec<&Machine> = machines
        .into_iter()
        .filter(|m| m.status == Status::Ready && !m.locked)
        .collect();
    if set.is_empty() {
        return Err(NoMatch::NoneReady);
    }
    for (name, test) in filters(c, &storage) {
        let before = set.len();
        set.retain(|m| test(m));
        if set.is_empty() {
            return Err(NoMatch::Unmatched {
                constraint: name,
                candidates: before,
            });
        }
    }
    set.sort_by(|a, b| size_key(a).cmp(&size_key(b)));
    Ok(set)
}

/// Whether one machine satisfies every constraint (ignoring its status).
pub fn satisfies(m: &Machine, c: &Constraints) -> Result<bool, ConstraintError> {
    let storage = match &c.storage {
        Some(text) => parse_storage(text)?,
        None => Vec::new(),
    };
    Ok(filters(c, &storage).iter().all(|(_, test)| test(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_syntax() {
        let w = parse_storage("root:20(ssd),data:100.5(hdd, fast),8").unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].label, "root");
        assert_eq!(w[0].min_bytes, 20_000_000_000);
        assert_eq!(w[0].tags, vec!["ssd"]);
        assert_eq!(w[1].tags, vec!["hdd", "fast"]);
        assert_eq!(w[1].min_bytes, 100_500_000_000);
        assert_eq!(w[2].label, "2");
        assert!(parse_storage("root:abc").is_err());
        assert!(parse_storage("root:20(ssd").is_err());
        assert!(parse_storage("root:-1").is_err());
        assert!(parse_storage("").unwrap().is_empty());
    }
}
