//! `agentbox run FILE|-`: sends a program to `POST /v1/compute/run` and relays what it
//! prints as it prints it (the streaming form of the route), then exits with the program's
//! exit code. `--json` prints the server's whole result instead.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use super::http::{self, Client};
use crate::cli::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let body = request_body(&args)?;
    let request = client.request("POST", "/v1/compute/run", &[]);
    if args.json {
        let response = client.send_json(request, &body)?;
        let result: Value = http::read_json(response)?;
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(exit_code(&result));
    }
    let response = client.send_json(request.set("Accept", "text/event-stream"), &body)?;
    let result = relay(response.into_reader())?;
    if result["timed_out"] == true {
        eprintln!("agentbox: the run was killed at its timeout");
    }
    if result["oom_killed"] == true {
        eprintln!("agentbox: the run ran out of memory");
    }
    for stream in ["stdout", "stderr"] {
        if result[format!("{stream}_truncated")] == true {
            eprintln!("agentbox: the run's {stream} was cut at the server's limit");
        }
    }
    Ok(exit_code(&result))
}

fn request_body(args: &RunArgs) -> anyhow::Result<Value> {
    let from_stdin = args.file == Path::new("-");
    let code = if from_stdin {
        let mut code = String::new();
        std::io::stdin()
            .read_to_string(&mut code)
            .context("reading the program from standard input")?;
        code
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let runtime = match &args.runtime {
        Some(runtime) => runtime.clone(),
        None => args
            .file
            .extension()
            .and_then(|e| e.to_str())
            .and_then(runner::Runtime::from_extension)
            .map(|r| r.name().to_string())
            .ok_or_else(|| {
                anyhow!(
                    "cannot tell the runtime of {}: pass --runtime python, typescript or bash",
                    args.file.display()
                )
            })?,
    };
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--env {pair:?} is not NAME=VALUE");
        };
        env.insert(name.to_string(), value.to_string());
    }
    let mut body = json!({"code": code, "runtime": runtime, "env": env, "network": args.network});
    if let Some(timeout) = args.timeout {
        body["timeout"] = json!(timeout);
    }
    if let Some(cwd) = &args.cwd {
        body["cwd"] = json!(cwd);
    }
    if let Some(path) = &args.stdin {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?;
        body["stdin"] = json!(text);
    }
    Ok(body)
}

/// Copies `stdout` and `stderr` events to this process's own, and returns the `result`
/// event's data.
fn relay(reader: impl Read) -> anyhow::Result<Value> {
    let mut event = String::new();
    let mut data = String::new();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for line in BufReader::new(reader).lines() {
        let line = line.context("reading the run's event stream")?;
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        } else if line.is_empty() && !data.is_empty() {
            let value: Value = http::parse_json(&data)?;
            data.clear();
            match event.as_str() {
                "stdout" => {
                    let mut out = stdout.lock();
                    out.write_all(value["text"].as_str().unwrap_or("").as_bytes())?;
                    out.flush()?;
                }
                "stderr" => {
                    let mut err = stderr.lock();
                    err.write_all(value["text"].as_str().unwrap_or("").as_bytes())?;
                    err.flush()?;
                }
                "result" => return Ok(value),
                "error" => bail!(
                    "the run failed: {}",
                    value["error"]["message"]
                        .as_str()
                        .unwrap_or("unknown error")
                ),
                _ => {}
            }
        }
    }
    bail!("the server ended the event stream without a result")
}

fn exit_code(result: &Value) -> ExitCode {
    let code = result["exit_code"].as_i64().unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
