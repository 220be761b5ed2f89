//! `check` warnings: things that are allowed but usually a mistake. They do not fail `check`
//! (nor `run`); `check` prints them after the problems, in the site's language
//! (`[site] language`), each with its key path. They are found in the file as written (before
//! meter templates and environment overrides), so they speak of what the user typed, and also
//! when the file has errors.
//!
//! - a register number of the 1-based Modicon habit: `register = 40001` for holding registers
//!   (4xxxx) or `30001` for input registers (3xxxx), where the gateway takes the 0-based
//!   protocol (PDU) address (Modbus Application Protocol V1.1b3, §4.4 addressing model: the
//!   data model numbers elements from 1, the PDU addresses them from 0, so 40001 is 0);
//! - a serial port of an `rtu` bus that does not exist on this machine.

use std::path::Path;

use serde_json::Value;

use crate::settings::{parse_toml, ConfigProblem};

/// The site's language as written (`zh` unless `en`).
fn english(tree: &Value) -> bool {
    tree.pointer("/site/language").and_then(Value::as_str) == Some("en")
}

/// The elements of an array of tables, with their index.
fn items(v: Option<&Value>) -> impl Iterator<Item = (usize, &Value)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flat_map(|a| a.iter().enumerate())
}

/// A 1-based Modicon number where a 0-based protocol address is meant: the address it most
/// likely stands for, and the table's prefix digit.
fn modicon(register: i64, kind: &str) -> Option<(i64, char)> {
    match kind {
        "holding" if (40001..=49999).contains(&register) => Some((register - 40001, '4')),
        "input" if (30001..=39999).contains(&register) => Some((register - 30001, '3')),
        _ => None,
    }
}

/// The warnings of a parsed configuration; `port_exists` says whether a serial device exists.
pub fn warnings_in(tree: &Value, port_exists: &dyn Fn(&str) -> bool) -> Vec<ConfigProblem> {
    let en = english(tree);
    let mut out = Vec::new();
    for (i, d) in items(tree.get("devices")) {
        for list in ["points", "ratios"] {
            for (j, p) in items(d.get(list)) {
                let Some(register) = p.get("register").and_then(Value::as_i64) else {
                    continue;
                };
                let kind = p.get("kind").and_then(Value::as_str).unwrap_or("holding");
                let Some((address, prefix)) = modicon(register, kind) else {
                    continue;
                };
                let (table_zh, table_en) = if prefix == '4' {
                    ("保持寄存器", "holding register")
                } else {
                    ("输入寄存器", "input register")
                };
                out.push(ConfigProblem::new(
                    format!("devices[{i}].{list}[{j}].register"),
                    if en {
                        format!("{register} looks like a 1-based Modicon number ({prefix}xxxx = {table_en} {}); the gateway takes the 0-based protocol address: register = {address}. Leave it if the meter's manual gives {register} as the protocol address", address + 1)
                    } else {
                        format!("{register} 像是从 1 开始的 Modicon 编号({prefix}xxxx = 第 {} 个{table_zh})；本网关使用从 0 开始的协议地址：register = {address}。若电表手册给出的协议地址确为 {register}，可忽略", address + 1)
                    },
                ));
            }
        }
    }
    for (i, b) in items(tree.get("buses")) {
        if b.get("transport").and_then(Value::as_str) != Some("rtu") {
            continue;
        }
        let Some(port) = b.get("port").and_then(Value::as_str) else {
            continue;
        };
        if !port_exists(port) {
            out.push(ConfigProblem::new(
                format!("buses[{i}].port"),
                if en {
                    format!("serial device {port} does not exist on this machine (adapter not plugged in, or another name: see ls /dev/ttyUSB* /dev/ttyS* /dev/serial/by-id/)")
                } else {
                    format!("串口设备 {port} 在本机不存在(USB 转串口未插上，或名称不同：可用 ls /dev/ttyUSB* /dev/ttyS* /dev/serial/by-id/ 查看)")
                },
            ));
        }
    }
    out
}

/// The warnings of the file at `path` (none when it cannot be read or parsed: `check` reports
/// that as a problem).
pub fn warnings(path: &Path) -> Vec<ConfigProblem> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(tree) = parse_toml(&text) else {
        return Vec::new();
    };
    warnings_in(&tree, &|p| Path::new(p).exists())
}

/// How a warning line starts, in the site's language.
pub fn prefix(path: &Path) -> &'static str {
    let en = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| parse_toml(&t).ok())
        .is_some_and(|t| english(&t));
    if en {
        "warning: "
    } else {
        "警告："
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(toml: &str) -> Vec<String> {
        let tree = parse_toml(toml).unwrap();
        warnings_in(&tree, &|p| p == "/dev/ttyS0")
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn modicon_numbers_and_missing_serial_ports() {
        let w = run(r#"
[site]
language = "en"
[[buses]]
id = "a"
transport = "rtu"
port = "/dev/ttyUSB7"
[[buses]]
id = "b"
transport = "rtu"
port = "/dev/ttyS0"
[[devices]]
id = "m"
[[devices.points]]
register = 40001
[[devices.points]]
register = 30011
kind = "input"
[[devices.points]]
register = 40001
kind = "input"
[[devices.points]]
register = 4001
[[devices.ratios]]
register = 40100
"#);
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("devices[0].points[0].register: 40001 looks like a 1-based Modicon number (4xxxx = holding register 1); the gateway takes the 0-based protocol address: register = 0."));
        assert!(w[1].starts_with("devices[0].points[1].register: 30011 looks like a 1-based Modicon number (3xxxx = input register 11); the gateway takes the 0-based protocol address: register = 10."));
        assert!(w[2].starts_with("devices[0].ratios[0].register: 40100 "));
        assert!(w[3].starts_with("buses[0].port: serial device /dev/ttyUSB7 does not exist"));
        // Chinese by default.
        let w = run("[[devices]]\nid = \"m\"\n[[devices.points]]\nregister = 40003\n");
        assert_eq!(w, vec!["devices[0].points[0].register: 40003 像是从 1 开始的 Modicon 编号(4xxxx = 第 3 个保持寄存器)；本网关使用从 0 开始的协议地址：register = 2。若电表手册给出的协议地址确为 40003，可忽略"]);
    }
}
