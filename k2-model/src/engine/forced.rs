//! Jumping over text the grammar forces. Inside a tool call most of the output is fixed by
//! the grammar (`<tool_call>\n{"name": "lookup", "arguments": {"topic": "` has one free
//! word in it); decoding it one token at a time costs a full forward pass per token for
//! tokens the model has no say in. Instead the forced text is found by asking the grammar,
//! tokenized the way the tokenizer writes it, and evaluated in one batch, at prompt speed.
//!
//! The grammar is asked about a probe set: one single-byte token per byte value, the
//! model's control tokens (grammars may require those, as K2's markers) and its
//! end-of-generation tokens. When exactly one probe is allowed, and it is an ASCII byte or a
//! control token, every allowed continuation starts with it: it is forced. When only end
//! tokens are allowed, the output is complete and needs no further forward pass.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

/// What can be forced: the probe tokens and what each stands for.
pub(crate) struct Probe {
    tokens: Vec<(LlamaToken, Kind)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A token whose piece is this one byte.
    Byte(u8),
    /// A control token, written as it is.
    Control,
    /// End of generation.
    End,
}

/// What the grammar allows next.
enum Next {
    Forced(LlamaToken, Kind),
    End,
    Free,
}

/// The result of [`Probe::jump`].
#[derive(Default)]
pub(crate) struct Jump {
    /// Forced tokens to evaluate.
    pub tokens: Vec<LlamaToken>,
    /// After them the grammar allows only the end.
    pub end: bool,
}

/// A forced piece of output, in order.
enum Forced {
    Text(String),
    Token(LlamaToken),
}

impl Probe {
    /// Scans the vocabulary once. `None` when ASCII text (printable, tab and line breaks) is
    /// not covered by single-byte tokens: a byte without a probe could hide an alternative,
    /// and forcing would be wrong.
    pub fn new(model: &LlamaModel) -> Option<Probe> {
        let vocab = model.vocab();
        let mut by_byte: [Option<LlamaToken>; 256] = [None; 256];
        let mut tokens = Vec::new();
        let mut piece = Vec::new();
        for token in vocab.tokens() {
            if vocab.is_eog(token) {
                tokens.push((token, Kind::End));
            } else if vocab.is_control(token) {
                tokens.push((token, Kind::Control));
            } else {
                piece.clear();
                vocab.token_to_piece_into(token, &mut piece, false, None);
                if let [b] = piece[..] {
                    by_byte[b as usize].get_or_insert(token);
                }
            }
        }
        let mut text = (b' '..=b'~').chain([b'\t', b'\n', b'\r']);
        if text.any(|b| by_byte[b as usize].is_none()) {
            return None;
        }
        tokens.extend((0..=255u8).filter_map(|b| by_byte[b as usize].map(|t| (t, Kind::Byte(b)))));
        Some(Probe { tokens })
    }

    /// The token for one byte (all of printable ASCII has one).
    fn byte_token(&self, byte: u8) -> Option<LlamaToken> {
        self.tokens
            .iter()
            .find(|(_, k)| *k == Kind::Byte(byte))
            .map(|(t, _)| *t)
    }

    /// What the grammar allows next: one forced token, only the end, or a choice.
    fn next(&self, grammar: &mut LlamaSampler) -> Next {
        let mut candidates = LlamaTokenDataArray::new(
            self.tokens
                .iter()
                .map(|&(t, _)| LlamaTokenData::new(t, 0.0, 0.0))
                .collect(),
            false,
        );
        candidates.apply_sampler(grammar);
        let kind = |token| self.tokens.iter().find(|(t, _)| *t == token).map(|p| p.1);
        // Decided as soon as two allowed probes are not both ends: in free text that is
        // after the first two, not after the whole probe set.
        let (mut only, mut ends) = (None, 0);
        for d in candidates.data.iter().filter(|d| d.logit().is_finite()) {
            match kind(d.id()) {
                // Models often have several end tokens (`<|im_end|>`, `<|endoftext|>`).
                Some(Kind::End) => ends += 1,
                _ if only.is_some() => return Next::Free,
                k => only = Some((d.id(), k)),
            }
        }
        match (only, ends) {
            (None, 0) => Next::Free,
            (None, _) => Next::End,
            (Some(_), 1..) => Next::Free,
            (Some((token, Some(Kind::Byte(b)))), _) if b.is_ascii() => {
                Next::Forced(token, Kind::Byte(b))
            }
            (Some((token, Some(Kind::Control))), _) => Next::Forced(token, Kind::Control),
            _ => Next::Free,
        }
    }

    /// The tokens the grammar forces from here (at most `max`), accepted by `grammar`; the
    /// caller evaluates them as if the model had written them. `end` is set when the grammar
    /// then allows nothing but the end: the output is complete without another forward pass.
    ///
    /// Before free text, the last forced token is left to the model: where forced text meets
    /// free text the tokenizer would often join them into one token (` "` + `Oslo`), and a
    /// model that finds the forced text cut at an odd place writes worse text after it.
    pub fn jump(&self, model: &LlamaModel, grammar: &mut LlamaSampler, max: usize) -> Jump {
        match self.next(grammar) {
            Next::Free => return Jump::default(),
            Next::End => {
                return Jump {
                    tokens: Vec::new(),
                    end: true,
                }
            }
            Next::Forced(..) => {}
        }
        // Found on a copy: the real grammar accepts only the tokens kept.
        let mut scout = grammar.clone();
        let mut pieces: Vec<Forced> = Vec::new();
        let mut len = 0;
        let end = loop {
            if len > max {
                break false;
            }
            let (token, kind) = match self.next(&mut scout) {
                Next::Forced(token, kind) => (token, kind),
                Next::End => break true,
                Next::Free => break false,
            };
            match (kind, pieces.last_mut()) {
                (Kind::Byte(b), Some(Forced::Text(text))) => text.push(b as char),
                (Kind::Byte(b), _) => pieces.push(Forced::Text((b as char).to_string())),
                _ => pieces.push(Forced::Token(token)),
            }
            scout.accept(token);
            len += 1;
        };
        let mut tokens = self.tokens_for(model, &pieces);
        if !end {
            tokens.pop();
        }
        let end = end && tokens.len() <= max;
        tokens.truncate(max);
        for &t in &tokens {
            grammar.accept(t);
        }
        Jump { tokens, end }
    }

    /// The tokens for forced pieces: text as the tokenizer writes it when that spells it
    /// exactly (some tokenizers add a leading space), byte by byte otherwise.
    fn tokens_for(&self, model: &LlamaModel, forced: &[Forced]) -> Vec<LlamaToken> {
        let vocab = model.vocab();
        let mut out = Vec::new();
        let mut spelled = Vec::new();
        for piece in forced {
            match piece {
                Forced::Token(t) => out.push(*t),
                Forced::Text(text) => {
                    let tokens = vocab.tokenize(text.as_bytes(), false, false);
                    spelled.clear();
                    for &t in &tokens {
                        vocab.token_to_piece_into(t, &mut spelled, false, None);
                    }
                    if spelled == text.as_bytes() {
                        out.extend(tokens);
                    } else {
                        out.extend(text.bytes().filter_map(|b| self.byte_token(b)));
                    }
                }
            }
        }
        out
    }
}
