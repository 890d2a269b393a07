//! `--transform CMD`: entities piped through a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::error::{Error, Result};
use crate::model::json;
use crate::model::key::{decode_path, display_path};
use crate::model::Entity;

/// `--transform CMD`: a child process (`sh -c CMD`) that reads one entity
/// per line on stdin and prints, for each, one line: the entity (changed or
/// not, same key) or `null` to leave it out. Entities stream through it; the
/// reader thread writes, the writer thread reads.
pub(super) struct Transform {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
    seen: u64,
}

impl Transform {
    pub(super) fn spawn(command: &str) -> Result<Transform> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Transform {
                command: command.to_string(),
                why: format!("cannot start it: {e}"),
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| Error::Transform {
            command: command.to_string(),
            why: "its standard output could not be opened".into(),
        })?;
        Ok(Transform {
            command: command.to_string(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            line: String::new(),
            seen: 0,
        })
    }

    /// The writing end, for the thread that reads the snapshot.
    pub(super) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Stop the child (the restore failed; a reader blocked writing to it
    /// must not wait forever).
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
    }

    fn fail(&mut self, why: String) -> Error {
        let _ = self.child.kill();
        Error::Transform {
            command: self.command.clone(),
            why,
        }
    }

    /// The transform's answer for the entity with original key `key`.
    pub(super) fn next(&mut self, key: &[u8]) -> Result<Option<Entity>> {
        let shown = decode_path(key)
            .map(|p| display_path(&p))
            .unwrap_or_default();
        self.line.clear();
        let n = self
            .stdout
            .read_line(&mut self.line)
            .map_err(|e| Error::Transform {
                command: self.command.clone(),
                why: format!("reading its output: {e}"),
            })?;
        if n == 0 {
            let status = self.child.wait().ok();
            let how = match status.and_then(|s| s.code()) {
                Some(0) => "exited".to_string(),
                Some(c) => format!("exited with status {c}"),
                None => "was killed".to_string(),
            };
            return Err(self.fail(format!(
                "it {how} after {} entities without answering for {shown}",
                self.seen
            )));
        }
        self.seen += 1;
        let text = self.line.trim();
        if text == "null" {
            return Ok(None);
        }
        let entity = json::entity_from_json(text)
            .map_err(|e| format!("it printed invalid JSON for {shown}: {e}"));
        let entity = match entity {
            Ok(e) => e,
            Err(why) => return Err(self.fail(why)),
        };
        if entity.key.path_bytes() != key {
            let why = format!(
                "it changed the key of {shown} to {}; a transform may change properties only",
                entity.key.display_path()
            );
            return Err(self.fail(why));
        }
        Ok(Some(entity))
    }

    /// Wait for the child; an error if it failed or printed extra lines.
    pub(super) fn finish(&mut self) -> Result<()> {
        drop(self.stdin.take());
        self.line.clear();
        let extra = self.stdout.read_line(&mut self.line).unwrap_or(0);
        let status = self.child.wait().map_err(|e| Error::Transform {
            command: self.command.clone(),
            why: format!("waiting for it: {e}"),
        })?;
        if extra > 0 {
            return Err(Error::Transform {
                command: self.command.clone(),
                why: "it printed more lines than it was given; print exactly one line per entity"
                    .into(),
            });
        }
        if !status.success() {
            return Err(Error::Transform {
                command: self.command.clone(),
                why: format!("it exited with {status}"),
            });
        }
        Ok(())
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
