//! `--cpus` lists: which CPUs the worker threads of `serve` and `run` are pinned to.

/// A parsed `--cpus` value such as `0`, `0,1` or `0-3`: worker `i` gets `cpus[i % len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// Parses `0`, `0,1`, `1-3,0`; an empty or reversed list is an error.
    pub fn parse(text: &str) -> Result<CpuList, String> {
        let mut cpus = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parse = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("not a cpu number: {s:?}"))
            };
            match part.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (parse(from)?, parse(to)?);
                    if from > to {
                        return Err(format!("empty cpu range {part:?}"));
                    }
                    cpus.extend(from..=to);
                }
                None => cpus.push(parse(part)?),
            }
        }
        if cpus.is_empty() {
            return Err("empty cpu list".into());
        }
        Ok(CpuList(cpus))
    }

    /// The CPU of worker `index`.
    pub fn for_worker(&self, index: usize) -> usize {
        self.0[index % self.0.len()]
    }

    /// How many CPUs the list names (repeats included).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl CpuList {
    /// The first CPU of the list this process may not run on, if any.
    pub fn first_unavailable(&self) -> Option<usize> {
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        self.0.iter().copied().find(|cpu| !allowed.contains(cpu))
    }
}

/// Pins the calling thread to `cpu`; false when the kernel refuses (not in our set).
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let list = |s| CpuList::parse(s).map(|c| c.0);
        assert_eq!(list("0"), Ok(vec![0]));
        assert_eq!(list("0,1"), Ok(vec![0, 1]));
        assert_eq!(list("1-3,0"), Ok(vec![1, 2, 3, 0]));
        assert!(list("").is_err());
        assert!(list("3-1").is_err());
        assert!(list("a").is_err());
        let two = CpuList::parse("4,6").unwrap();
        assert_eq!((two.for_worker(0), two.for_worker(3), two.len()), (4, 6, 2));
        assert_eq!(
            CpuList::parse("100000").unwrap().first_unavailable(),
            Some(100000)
        );
    }
}
