//! Reading entity bodies back: index lookup, then the pack block, through a
//! small cache of decompressed blocks (bounded memory). Every body read is
//! checked against its hash, so damage surfaces as an error, never as a
//! wrong entity.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::rc::Rc;

use super::index::{Index, Location};
use super::pack::read_block;
use super::Repository;
use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId};
use crate::model::{codec, Entity};

const CACHE_BLOCKS: usize = 64;

pub struct Store<'a> {
    repo: &'a Repository,
    pub index: Index,
    cache: RefCell<BlockCache>,
}

#[derive(Default)]
struct BlockCache {
    blocks: HashMap<(PackId, u64), Rc<Vec<u8>>>,
    order: VecDeque<(PackId, u64)>,
    file: Option<(PackId, File)>,
}

impl<'a> Store<'a> {
    pub fn open(repo: &'a Repository) -> Result<Store<'a>> {
        let index = repo.open_index(false)?;
        Ok(Store {
            repo,
            index,
            cache: RefCell::new(BlockCache::default()),
        })
    }

    /// The canonical bytes of an entity, verified against its hash.
    pub fn get_bytes(&self, hash: &EntityHash) -> Result<Vec<u8>> {
        let loc = self
            .index
            .lookup(hash)?
            .ok_or_else(|| Error::MissingEntity {
                hash: hash.to_hex(),
            })?;
        let block = self.block(&loc)?;
        let (s, e) = (loc.off as usize, loc.off as usize + loc.len as usize);
        let body = block.get(s..e).ok_or_else(|| Error::DamagedPack {
            pack: loc.pack.to_hex(),
            why: format!("entity {} lies outside its block", hash.short()),
        })?;
        if self.repo.body_id(body) != *hash {
            return Err(Error::DamagedPack {
                pack: loc.pack.to_hex(),
                why: format!("entity {} does not match its hash", hash.short()),
            });
        }
        Ok(body.to_vec())
    }

    pub fn get(&self, hash: &EntityHash) -> Result<Entity> {
        let bytes = self.get_bytes(hash)?;
        codec::decode(&bytes).map_err(|why| Error::DamagedPack {
            pack: "(entity)".into(),
            why: format!("entity {} does not decode: {why}", hash.short()),
        })
    }

    fn block(&self, loc: &Location) -> Result<Rc<Vec<u8>>> {
        let mut c = self.cache.borrow_mut();
        let k = (loc.pack, loc.block_off);
        if let Some(b) = c.blocks.get(&k) {
            return Ok(b.clone());
        }
        let path = self.repo.pack_path(&loc.pack);
        if c.file
            .as_ref()
            .map(|(id, _)| *id != loc.pack)
            .unwrap_or(true)
        {
            let path = self.repo.local_pack(&loc.pack)?;
            let f = File::open(&path).map_err(|e| Error::DamagedPack {
                pack: loc.pack.to_hex(),
                why: format!("cannot open {}: {e}", path.display()),
            })?;
            c.file = Some((loc.pack, f));
        }
        let Some((_, file)) = c.file.as_mut() else {
            return Err(Error::Internal("block cache lost its file"));
        };
        let block = Rc::new(read_block(
            self.repo.keys().map(|k| &**k),
            file,
            &path,
            (loc.block_off, loc.block_len, loc.block_raw),
        )?);
        if c.order.len() >= CACHE_BLOCKS {
            if let Some(old) = c.order.pop_front() {
                c.blocks.remove(&old);
            }
        }
        c.order.push_back(k);
        c.blocks.insert(k, block.clone());
        Ok(block)
    }
}
