//! The task graph of a job: validation (unknown dependencies, duplicates, cycles) and
//! the parent/child relations the executor walks.

use std::collections::HashMap;

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
        for (i, (id, deps)) in tasks.iter().enumerate() {
            for dep in deps {
                match index.get(dep) {
                    Some(&j) if j == i => errors.push(DagError::SelfDependency(id.to_string())),
                    Some(&j) => {
                        if !parents[i].contains(&j) {
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

    type Spec<'a> = &'a [(&'a str, &'a [&'a str])];

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
