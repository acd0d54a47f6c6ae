//! The task graph of a job: validation (unknown dependencies, duplicates, cycles) and
//! the parent/child relations the executor walks. Building it is linear in tasks +
//! edges; so is each batch of 64 "is this task upstream of that one" questions.

use std::collections::{HashMap, HashSet};

/// Why a set of tasks is not a valid DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagError {
    #[error("duplicate task id '{0}'")]
    DuplicateTask(String),
    #[error("task '{task}' depends on unknown task '{dependency}'")]
    UnknownDependency { task: String, dependency: String },
    #[error("task '{0}' depends on itself")]
    SelfDependency(String),
    /// The tasks on the cycle, in dependency order, the first repeated at the end.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// A validated DAG over task indices `0..len`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dag {
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
    order: Vec<usize>,
}

impl Dag {
    /// Builds the graph of `(task id, dependency ids)` pairs, reporting every error.
    pub fn build(tasks: &[(&str, Vec<&str>)]) -> Result<Dag, Vec<DagError>> {
        let mut errors = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
        for (i, (id, _)) in tasks.iter().enumerate() {
            if index.insert(id, i).is_some() {
                errors.push(DagError::DuplicateTask(id.to_string()));
            }
        }
        let n = tasks.len();
        let mut parents = vec![Vec::new(); n];
        let mut children = vec![Vec::new(); n];
        // `listed[j] == i`: task i lists j already (a dependency written twice counts
        // once), without searching i's list each time.
        let mut listed = vec![usize::MAX; n];
        for (i, (id, deps)) in tasks.iter().enumerate() {
            for dep in deps {
                match index.get(dep) {
                    Some(&j) if j == i => errors.push(DagError::SelfDependency(id.to_string())),
                    Some(&j) => {
                        if listed[j] != i {
                            listed[j] = i;
                            parents[i].push(j);
                            children[j].push(i);
                        }
                    }
                    None => errors.push(DagError::UnknownDependency {
                        task: id.to_string(),
                        dependency: dep.to_string(),
                    }),
                }
            }
        }
        // Kahn's algorithm, stable in file order.
        let mut indegree: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for &c in children[i].iter().rev() {
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.push(c);
                }
            }
        }
        if order.len() < n {
            let cycle = find_cycle(&parents, &indegree);
            errors.push(DagError::Cycle(
                cycle.into_iter().map(|i| tasks[i].0.to_string()).collect(),
            ));
        }
        if errors.is_empty() {
            Ok(Dag {
                parents,
                children,
                order,
            })
        } else {
            Err(errors)
        }
    }

    pub fn len(&self) -> usize {
        self.parents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// The tasks `i` depends on.
    pub fn parents(&self, i: usize) -> &[usize] {
        &self.parents[i]
    }

    /// The tasks that depend on `i`.
    pub fn children(&self, i: usize) -> &[usize] {
        &self.children[i]
    }

    /// A topological order (dependencies first), stable in file order.
    pub fn topological_order(&self) -> &[usize] {
        &self.order
    }

    /// The tasks a run may start (or skip) next: those not `started` whose parents have
    /// all `settled`, in topological order. One pass over the tasks and their edges.
    pub fn ready(&self, started: &[bool], settled: impl Fn(usize) -> bool) -> Vec<usize> {
        self.order
            .iter()
            .copied()
            .filter(|&i| !started[i] && self.parents[i].iter().all(|&p| settled(p)))
            .collect()
    }

    /// Of the `(from, to)` pairs asked, those where `from` is upstream of `to` (`to`
    /// depends on it, directly or through other tasks).
    ///
    /// A direct dependency, or a `from` that comes after `to` in the topological order,
    /// is answered at once. The rest are answered 64 distinct `from`s at a time by one
    /// pass over the graph in topological order, each task getting the set of those 64
    /// that reach it as the bits of a word: O((tasks + edges) x ceil(k / 64)) for k
    /// distinct `from`s, where a search per pair would be O(tasks + edges) each.
    pub fn upstream_pairs(&self, pairs: &[(usize, usize)]) -> HashSet<(usize, usize)> {
        let n = self.len();
        let mut position = vec![0; n];
        for (at, &i) in self.order.iter().enumerate() {
            position[i] = at;
        }
        let mut upstream = HashSet::new();
        let mut open: Vec<(usize, usize)> = Vec::new();
        let mut direct: Option<HashSet<(usize, usize)>> = None;
        for &(from, to) in pairs {
            if from >= n || to >= n || position[from] >= position[to] {
                continue;
            }
            let direct = direct.get_or_insert_with(|| {
                (0..n)
                    .flat_map(|i| self.parents[i].iter().map(move |&p| (p, i)))
                    .collect()
            });
            if direct.contains(&(from, to)) {
                upstream.insert((from, to));
            } else {
                open.push((from, to));
            }
        }
        // The distinct sources, in topological order, 64 to a batch.
        let mut sources: Vec<usize> = open.iter().map(|&(from, _)| from).collect();
        sources.sort_unstable_by_key(|&s| position[s]);
        sources.dedup();
        let mut bit = vec![None; n];
        let mut reach = vec![0u64; n];
        for batch in sources.chunks(64) {
            for (b, &s) in batch.iter().enumerate() {
                bit[s] = Some(b);
            }
            // Nothing before the first source can be reached from the batch.
            let start = position[batch[0]];
            for &i in &self.order[start..] {
                let mut word = bit[i].map_or(0, |b| 1u64 << b);
                for &p in &self.parents[i] {
                    word |= reach[p];
                }
                reach[i] = word;
            }
            for &(from, to) in &open {
                if let Some(b) = bit[from] {
                    if reach[to] & (1 << b) != 0 {
                        upstream.insert((from, to));
                    }
                }
            }
            for &s in batch {
                bit[s] = None;
            }
            for &i in &self.order[start..] {
                reach[i] = 0;
            }
        }
        upstream
    }
}

/// Walks parent edges among the nodes Kahn's algorithm could not order until a node
/// repeats; returns that cycle in dependency order, closed (first node repeated).
fn find_cycle(parents: &[Vec<usize>], indegree: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| indegree[i] > 0;
    let Some(start) = (0..parents.len()).find(|&i| stuck(i)) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut seen = vec![usize::MAX; parents.len()];
    seen[start] = 0;
    let mut cur = start;
    loop {
        let next = *parents[cur]
            .iter()
            .find(|&&p| stuck(p))
            .expect("a stuck node has a stuck parent");
        if seen[next] != usize::MAX {
            let mut cycle: Vec<usize> = path[seen[next]..].to_vec();
            cycle.reverse();
            let first = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, &n)| n)
                .map_or(0, |(k, _)| k);
            cycle.rotate_left(first);
            cycle.push(cycle[0]);
            return cycle;
        }
        seen[next] = path.len();
        path.push(next);
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(spec: &[(&'static str, &[&'static str])]) -> Result<Dag, Vec<DagError>> {
        let tasks: Vec<(&str, Vec<&str>)> = spec.iter().map(|(id, d)| (*id, d.to_vec())).collect();
        Dag::build(&tasks)
    }

    #[test]
    fn orders_dependencies_first() {
        let dag = build(&[
            ("load", &["transform"]),
            ("extract", &[]),
            ("transform", &["extract"]),
        ])
        .unwrap();
        assert_eq!(dag.topological_order(), &[1, 2, 0]);
        assert_eq!(dag.parents(0), &[2]);
        assert_eq!(dag.children(1), &[2]);
    }

    #[test]
    fn diamond_is_valid() {
        let dag = build(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]).unwrap();
        assert_eq!(dag.topological_order(), &[0, 1, 2, 3]);
    }

    #[test]
    fn ready_tasks_have_every_parent_settled() {
        // A diamond a -> (b, c) -> d: (started, settled, ready).
        let dag = build(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]).unwrap();
        let cases: &[(&[usize], &[usize], &[usize])] = &[
            (&[], &[], &[0]),
            (&[0], &[], &[]),
            (&[0], &[0], &[1, 2]),
            (&[0, 1], &[0], &[2]),
            (&[0, 1, 2], &[0, 1], &[]),
            (&[0, 1, 2], &[0, 1, 2], &[3]),
            (&[0, 1, 2, 3], &[0, 1, 2, 3], &[]),
        ];
        for (started, settled, want) in cases {
            let started: Vec<bool> = (0..4).map(|i| started.contains(&i)).collect();
            let got = dag.ready(&started, |p| settled.contains(&p));
            assert_eq!(&got, want, "started {started:?}, settled {settled:?}");
        }
    }

    type Spec<'a> = &'a [(&'a str, &'a [&'a str])];

    /// Every pair of tasks, asked at once, against a search from each task.
    #[test]
    fn upstream_pairs_agree_with_a_search() {
        // A diamond, a chain beside it, and a task listing a dependency twice.
        let spec: Spec = &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a", "a"]),
            ("d", &["b", "c"]),
            ("x", &[]),
            ("y", &["x"]),
            ("z", &["y", "d"]),
        ];
        let dag = build(spec).unwrap();
        assert_eq!(dag.parents(2), &[0]);
        let n = dag.len();
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|f| (0..n).map(move |t| (f, t))).collect();
        let got = dag.upstream_pairs(&pairs);
        for &(from, to) in &pairs {
            let mut stack = dag.parents(to).to_vec();
            let mut seen = vec![false; n];
            let mut want = false;
            while let Some(i) = stack.pop() {
                want |= i == from;
                if !std::mem::replace(&mut seen[i], true) {
                    stack.extend_from_slice(dag.parents(i));
                }
            }
            assert_eq!(got.contains(&(from, to)), want, "{from} -> {to}");
        }
    }

    /// More than 64 distinct sources take several batches; a chain is the deepest case.
    #[test]
    fn upstream_pairs_over_batches() {
        let ids: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
        let tasks: Vec<(&str, Vec<&str>)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let deps = if i == 0 {
                    vec![]
                } else {
                    vec![ids[i - 1].as_str()]
                };
                (id.as_str(), deps)
            })
            .collect();
        let dag = Dag::build(&tasks).unwrap();
        // Every task asks about a task two before it, and about the one after it.
        let pairs: Vec<(usize, usize)> = (2..199).flat_map(|i| [(i - 2, i), (i + 1, i)]).collect();
        let got = dag.upstream_pairs(&pairs);
        let want: HashSet<(usize, usize)> = (2..199).map(|i| (i - 2, i)).collect();
        assert_eq!(got, want);
        assert!(dag.upstream_pairs(&[(0, 500), (500, 0)]).is_empty());
    }

    #[test]
    fn reports_every_error() {
        let cases: &[(Spec, &[DagError])] = &[
            (&[("a", &["a"])], &[DagError::SelfDependency("a".into())]),
            (
                &[("a", &["nope"])],
                &[DagError::UnknownDependency {
                    task: "a".into(),
                    dependency: "nope".into(),
                }],
            ),
            (
                &[("a", &[]), ("a", &[])],
                &[DagError::DuplicateTask("a".into())],
            ),
            (
                &[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])],
                &[DagError::Cycle(vec![
                    "a".into(),
                    "b".into(),
                    "c".into(),
                    "a".into(),
                ])],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(build(spec).unwrap_err(), want.to_vec(), "{spec:?}");
        }
    }
}
