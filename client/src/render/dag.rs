//! A job's task DAG drawn as a tree: roots first (file order), each task's dependents
//! indented under it with `├─`/`└─`.

use std::collections::HashMap;
use std::fmt;

/// One line of the tree: `prefix` holds the indentation and connector (`│  └─ `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine {
    pub prefix: String,
    /// The task's position in the input.
    pub task: usize,
    pub id: String,
    pub mark: TreeMark,
}

/// Why a task's dependents are not drawn under this line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeMark {
    /// They are (or it has none).
    None,
    /// They were drawn under the task's first appearance.
    SeeAbove,
    /// The task is its own ancestor.
    Cycle,
}

impl fmt::Display for TreeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.mark {
            TreeMark::None => "",
            TreeMark::SeeAbove => " (see above)",
            TreeMark::Cycle => " (cycle)",
        };
        write!(f, "{}{}{mark}", self.prefix, self.id)
    }
}

/// The tree lines of the tasks given as `(id, depends_on)` in file order.
///
/// A task with several parents appears under each of them; its own dependents are
/// drawn under the first appearance only, later ones read `id (see above)`. Tasks
/// the roots do not reach (a cycle, which the server rejects anyway) are drawn as
/// extra roots, so every task shows up and nothing loops.
pub fn dag_tree<'a>(tasks: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Vec<TreeLine> {
    let tasks: Vec<(&str, &[String])> = tasks.into_iter().collect();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, (id, _)) in tasks.iter().enumerate() {
        index.entry(id).or_insert(i);
    }
    let mut children = vec![Vec::new(); tasks.len()];
    let mut has_parent = vec![false; tasks.len()];
    for (child, (_, deps)) in tasks.iter().enumerate() {
        for dep in deps.iter() {
            match index.get(dep.as_str()) {
                Some(&parent) if parent != child && !children[parent].contains(&child) => {
                    children[parent].push(child);
                    has_parent[child] = true;
                }
                _ => {}
            }
        }
    }

    let mut tree = Tree {
        ids: tasks.iter().map(|(id, _)| *id).collect(),
        children,
        expanded: vec![false; tasks.len()],
        on_path: vec![false; tasks.len()],
        lines: Vec::new(),
    };
    for root in (0..tasks.len()).filter(|&i| !has_parent[i]) {
        tree.draw(root, "", None);
    }
    for rest in 0..tasks.len() {
        if !tree.expanded[rest] {
            tree.draw(rest, "", None);
        }
    }
    tree.lines
}

struct Tree<'a> {
    ids: Vec<&'a str>,
    children: Vec<Vec<usize>>,
    /// Whether a task's dependents were already drawn under it.
    expanded: Vec<bool>,
    /// Tasks between the root and the current one, to stop on a cycle.
    on_path: Vec<bool>,
    lines: Vec<TreeLine>,
}

impl Tree<'_> {
    /// Draws `task` after `prefix`; `last` is `None` for a root, else whether `task` is
    /// its parent's last child.
    fn draw(&mut self, task: usize, prefix: &str, last: Option<bool>) {
        let (connector, child_prefix) = match last {
            None => ("", String::new()),
            Some(false) => ("├─ ", format!("{prefix}│  ")),
            Some(true) => ("└─ ", format!("{prefix}   ")),
        };
        let id = self.ids[task];
        let has_children = !self.children[task].is_empty();
        let mark = if self.on_path[task] {
            TreeMark::Cycle
        } else if self.expanded[task] && has_children {
            TreeMark::SeeAbove
        } else {
            TreeMark::None
        };
        self.lines.push(TreeLine {
            prefix: format!("{prefix}{connector}"),
            task,
            id: id.to_string(),
            mark,
        });
        if mark != TreeMark::None {
            return;
        }
        self.expanded[task] = true;
        self.on_path[task] = true;
        let children = self.children[task].clone();
        for (n, &child) in children.iter().enumerate() {
            self.draw(child, &child_prefix, Some(n + 1 == children.len()));
        }
        self.on_path[task] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(tasks: &[(&str, &[&str])]) -> String {
        let owned: Vec<(String, Vec<String>)> = tasks
            .iter()
            .map(|(id, deps)| (id.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect();
        let lines = dag_tree(
            owned
                .iter()
                .map(|(id, deps)| (id.as_str(), deps.as_slice())),
        );
        for line in &lines {
            assert_eq!(line.id, owned[line.task].0);
        }
        lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (case name, tasks as (id, depends_on), the tree)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a [&'a str])], &'a str);

    #[test]
    fn trees() {
        let cases: &[Case] = &[
            ("empty", &[], ""),
            ("single", &[("greet", &[])], "greet"),
            (
                "chain",
                &[("a", &[]), ("b", &["a"]), ("c", &["b"])],
                "a\n└─ b\n   └─ c",
            ),
            (
                "fan out keeps file order",
                &[("a", &[]), ("b", &["a"]), ("c", &["a"])],
                "a\n├─ b\n└─ c",
            ),
            (
                "two roots",
                &[("a", &[]), ("b", &[]), ("c", &["b"])],
                "a\nb\n└─ c",
            ),
            (
                "pipes continue past a deep child",
                &[("a", &[]), ("b", &["a"]), ("d", &["b"]), ("c", &["a"])],
                "a\n├─ b\n│  └─ d\n└─ c",
            ),
            (
                "diamond: the join appears under both parents",
                &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
                "a\n├─ b\n│  └─ d\n└─ c\n   └─ d",
            ),
            (
                "a repeated subtree is drawn once",
                &[("a", &[]), ("b", &[]), ("j", &["a", "b"]), ("k", &["j"])],
                "a\n└─ j\n   └─ k\nb\n└─ j (see above)",
            ),
            (
                "unknown dependency makes a root",
                &[("a", &["nope"]), ("b", &["a"])],
                "a\n└─ b",
            ),
            (
                "a cycle still shows every task",
                &[("r", &[]), ("a", &["b"]), ("b", &["a"])],
                "r\na\n└─ b\n   └─ a (cycle)",
            ),
        ];
        for (name, tasks, want) in cases {
            assert_eq!(draw(tasks), *want, "{name}");
        }
    }
}
