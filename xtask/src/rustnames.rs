//! Rust names for gdb: a copy of the kernel whose symbol table and DWARF
//! name functions by their Rust paths (`kernel::smp::finish`) instead of
//! the v0 symbols the GCC backend writes there
//! (`_RNvNtCsd3IbtnqKMWT_6kernel3smp6finish`).
//!
//! Why here and not in gdb: gdb resolves `break kernel::smp::finish`
//! against the names in the ELF symbol table and the DWARF, and its Python
//! API has no hook into that lookup; its own Rust demangler keeps the crate
//! hash (`kernel[981dd433cb2d9e15]::smp::finish`), which no one types. So
//! the names are fixed where they are written: each v0 name in `.strtab`
//! and `.debug_str` is overwritten in place by its demangled path without
//! the hash (`rustc-demangle`'s alternate form), NUL-padded. Offsets do not
//! move, so nothing else in the file changes.
//!
//! A name is left alone when its path is longer than its symbol (a generic
//! path can be), when it is not a v0 symbol, or when another reference
//! points inside it: linkers share string tails (`finish` may be the end
//! of `..._6kernel3smp6finish`), and overwriting would change that other
//! name. The references are every symbol's name offset and every
//! `.debug_str` offset of every DIE's attributes, direct (`DW_FORM_strp`)
//! or through `.debug_str_offsets` (read with `gimli`).

use std::collections::BTreeSet;
use std::ops::Range;

use object::read::elf::{ElfFile64, FileHeader, SectionHeader, Sym};
use object::{Endianness, Object, ObjectSection};

use crate::util::{Result, err};

/// What [`rustify`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Renamed {
    pub symbols: usize,
    pub debug_names: usize,
    /// v0 names left alone (longer path, or a shared tail).
    pub kept: usize,
}

/// Rewrites, in `elf` (a copy of the kernel), every v0 name that can be
/// rewritten in place; see the module's text.
pub fn rustify(elf: &mut [u8]) -> Result<Renamed> {
    let (strtab, sym_refs, debug_str, str_refs) = {
        let file = ElfFile64::<Endianness>::parse(&*elf)
            .map_err(|e| err(format!("reading the kernel ELF: {e}")))?;
        let endian = file.endian();
        let mut sym_refs = BTreeSet::new();
        let mut strtab = None;
        let header = file.elf_header();
        let sections = header
            .sections(endian, &*elf)
            .map_err(|e| err(format!("reading the section table: {e}")))?;
        if let Some(symbols) = sections
            .symbols(endian, &*elf, object::elf::SHT_SYMTAB)
            .ok()
            .filter(|s| !s.is_empty())
        {
            let link = symbols.string_section();
            let sh = sections
                .section(link)
                .map_err(|e| err(format!("the symbol table's strings: {e}")))?;
            let (off, size) = sh
                .file_range(endian)
                .ok_or_else(|| err("the symbol strings have no file data"))?;
            strtab = Some(off as usize..(off + size) as usize);
            for s in symbols.iter() {
                sym_refs.insert(s.st_name(endian) as usize);
            }
        }
        let debug_str = file
            .section_by_name(".debug_str")
            .and_then(|s| s.file_range())
            .map(|(o, n)| o as usize..(o + n) as usize);
        let str_refs = match &debug_str {
            Some(_) => strp_offsets(&file)?,
            None => BTreeSet::new(),
        };
        (strtab, sym_refs, debug_str, str_refs)
    };
    let mut out = Renamed::default();
    if let Some(r) = strtab {
        let (done, kept) = rewrite(&mut elf[r], &sym_refs);
        out.symbols = done;
        out.kept += kept;
    }
    if let Some(r) = debug_str {
        let (done, kept) = rewrite(&mut elf[r], &str_refs);
        out.debug_names = done;
        out.kept += kept;
    }
    Ok(out)
}

/// Every `.debug_str` offset a DIE attribute refers to.
fn strp_offsets(file: &ElfFile64<'_, Endianness>) -> Result<BTreeSet<usize>> {
    let load = |id: gimli::SectionId| -> std::result::Result<&[u8], gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]))
    };
    let sections = gimli::DwarfSections::load(load).map_err(|e| err(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut refs = BTreeSet::new();
    let mut units = dwarf.units();
    let bad = |e: gimli::Error| err(format!("reading the DWARF: {e}"));
    while let Some(header) = units.next().map_err(bad)? {
        let unit = dwarf.unit(header).map_err(bad)?;
        let mut entries = unit.entries();
        while let Some((_, entry)) = entries.next_dfs().map_err(bad)? {
            let mut attrs = entry.attrs();
            while let Some(attr) = attrs.next().map_err(bad)? {
                match attr.value() {
                    gimli::AttributeValue::DebugStrRef(o) => {
                        refs.insert(o.0);
                    }
                    // DWARF 5's indirect form (split DWARF): the offset is
                    // in .debug_str_offsets.
                    gimli::AttributeValue::DebugStrOffsetsIndex(i) => {
                        let o = dwarf
                            .debug_str_offsets
                            .get_str_offset(unit.encoding().format, unit.str_offsets_base, i)
                            .map_err(bad)?;
                        refs.insert(o.0);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(refs)
}

/// The Rust path of a v0 symbol, without the crate hash.
pub fn rust_path(symbol: &str) -> Option<String> {
    if !symbol.starts_with("_R") {
        return None;
    }
    rustc_demangle::try_demangle(symbol)
        .ok()
        .map(|d| format!("{d:#}"))
}

/// Rewrites the v0 names at `refs` in the string table `table` in place;
/// returns (rewritten, left alone).
fn rewrite(table: &mut [u8], refs: &BTreeSet<usize>) -> (usize, usize) {
    let mut done = 0;
    let mut kept = 0;
    for &start in refs {
        let Some(len) = table
            .get(start..)
            .and_then(|t| t.iter().position(|&b| b == 0))
        else {
            continue;
        };
        let span: Range<usize> = start..start + len;
        let Some(path) = std::str::from_utf8(&table[span.clone()])
            .ok()
            .and_then(rust_path)
        else {
            continue;
        };
        // Another name ends inside this one (a shared tail, or the empty
        // name at its NUL): overwriting would change it.
        let shared = refs.range(start + 1..=span.end).next().is_some();
        if shared || path.len() > len {
            kept += 1;
            continue;
        }
        table[start..start + path.len()].copy_from_slice(path.as_bytes());
        table[start + path.len()..span.end].fill(0);
        done += 1;
    }
    (done, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINISH: &str = "_RNvNtCsd3IbtnqKMWT_6kernel3smp6finish";

    #[test]
    fn v0_symbols_become_paths_without_the_hash() {
        assert_eq!(rust_path(FINISH).as_deref(), Some("kernel::smp::finish"));
        assert_eq!(rust_path("alpha_boot_main"), None);
        assert_eq!(rust_path("_ZN3foo3barE"), None, "legacy mangling is not v0");
    }

    fn table(names: &[&str]) -> (Vec<u8>, BTreeSet<usize>) {
        let mut t = vec![0u8];
        let mut refs = BTreeSet::new();
        for n in names {
            refs.insert(t.len());
            t.extend_from_slice(n.as_bytes());
            t.push(0);
        }
        (t, refs)
    }

    fn names(t: &[u8], refs: &BTreeSet<usize>) -> Vec<String> {
        refs.iter()
            .map(|&o| {
                let end = o + t[o..].iter().position(|&b| b == 0).unwrap();
                String::from_utf8_lossy(&t[o..end]).into_owned()
            })
            .collect()
    }

    #[test]
    fn names_are_rewritten_in_place_and_others_kept() {
        let (mut t, refs) = table(&[FINISH, "alpha_boot_main", "x"]);
        let len = t.len();
        assert_eq!(rewrite(&mut t, &refs), (1, 0));
        assert_eq!(t.len(), len, "offsets do not move");
        assert_eq!(
            names(&t, &refs),
            ["kernel::smp::finish", "alpha_boot_main", "x"]
        );
    }

    #[test]
    fn a_shared_tail_keeps_the_symbol() {
        let (mut t, mut refs) = table(&[FINISH]);
        // "finish" is the tail of the symbol, referred to on its own.
        let tail = 1 + FINISH.len() - "finish".len();
        refs.insert(tail);
        assert_eq!(rewrite(&mut t, &refs), (0, 1));
        assert_eq!(names(&t, &refs), [FINISH, "finish"]);
    }
}
