//! libvirt typed parameters (`virTypedParameter`), copied into owned values.

use std::ffi::CStr;

use libvirt_sys as sys;

/// One parameter's value, by libvirt's type tag.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `VIR_TYPED_PARAM_INT`
    Int(i32),
    /// `VIR_TYPED_PARAM_UINT`
    UInt(u32),
    /// `VIR_TYPED_PARAM_LLONG`
    LLong(i64),
    /// `VIR_TYPED_PARAM_ULLONG`
    ULLong(u64),
    /// `VIR_TYPED_PARAM_DOUBLE`
    Double(f64),
    /// `VIR_TYPED_PARAM_BOOLEAN`
    Bool(bool),
    /// `VIR_TYPED_PARAM_STRING`
    String(String),
    /// A type tag this crate does not know (newer libvirt): kept, not parsed.
    Unknown(i32),
}

/// A list of named parameters, looked up by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypedParams {
    params: Vec<(String, ParamValue)>,
}

impl TypedParams {
    /// Builds from owned pairs (tests, other sources).
    pub fn from_pairs(params: Vec<(String, ParamValue)>) -> Self {
        TypedParams { params }
    }

    /// Copies `n` parameters from libvirt's array.
    ///
    /// # Safety
    /// `ptr` must point to `n` initialised `virTypedParameter`s (or be NULL
    /// with `n == 0`), valid for the duration of the call; strings in them
    /// must be NUL-terminated or NULL.
    pub(crate) unsafe fn copy_from(ptr: *const sys::virTypedParameter, n: usize) -> Self {
        if ptr.is_null() || n == 0 {
            return TypedParams::default();
        }
        // SAFETY: the caller guarantees ptr points to n initialised elements.
        let raw = unsafe { std::slice::from_raw_parts(ptr, n) };
        let params = raw.iter().map(copy_param).collect();
        TypedParams { params }
    }

    /// All parameters in libvirt's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// `name` as an unsigned integer, accepting any integer type holding a
    /// non-negative value; `None` when absent, negative or not an integer.
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            ParamValue::Int(v) => u64::try_from(*v).ok(),
            ParamValue::UInt(v) => Some(u64::from(*v)),
            ParamValue::LLong(v) => u64::try_from(*v).ok(),
            ParamValue::ULLong(v) => Some(*v),
            _ => None,
        }
    }

    /// `name` as a signed integer.
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            ParamValue::Int(v) => Some(i64::from(*v)),
            ParamValue::UInt(v) => Some(i64::from(*v)),
            ParamValue::LLong(v) => Some(*v),
            ParamValue::ULLong(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// `name` as a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            ParamValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

fn copy_param(p: &sys::virTypedParameter) -> (String, ParamValue) {
    // The field is a fixed array that libvirt NUL-terminates; read up to the
    // first NUL without trusting it (bounded by the array).
    let field: Vec<u8> = p
        .field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let name = String::from_utf8_lossy(&field).into_owned();
    let t = p.type_ as u32;
    // SAFETY (for each union read below): libvirt sets `type_` to the member
    // it initialised; we read only that member.
    let value = if t == sys::VIR_TYPED_PARAM_INT {
        // SAFETY: type tag says `i` is the live member.
        ParamValue::Int(unsafe { p.value.i })
    } else if t == sys::VIR_TYPED_PARAM_UINT {
        // SAFETY: type tag says `ui` is the live member.
        ParamValue::UInt(unsafe { p.value.ui })
    } else if t == sys::VIR_TYPED_PARAM_LLONG {
        // SAFETY: type tag says `l` is the live member.
        ParamValue::LLong(unsafe { p.value.l })
    } else if t == sys::VIR_TYPED_PARAM_ULLONG {
        // SAFETY: type tag says `ul` is the live member.
        ParamValue::ULLong(unsafe { p.value.ul })
    } else if t == sys::VIR_TYPED_PARAM_DOUBLE {
        // SAFETY: type tag says `d` is the live member.
        ParamValue::Double(unsafe { p.value.d })
    } else if t == sys::VIR_TYPED_PARAM_BOOLEAN {
        // SAFETY: type tag says `b` is the live member.
        ParamValue::Bool(unsafe { p.value.b } != 0)
    } else if t == sys::VIR_TYPED_PARAM_STRING {
        // SAFETY: type tag says `s` is the live member.
        let s = unsafe { p.value.s };
        if s.is_null() {
            ParamValue::String(String::new())
        } else {
            // SAFETY: a non-NULL string parameter is NUL-terminated and owned
            // by the parameter array, alive while `p` is borrowed.
            ParamValue::String(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
        }
    } else {
        ParamValue::Unknown(p.type_)
    };
    (name, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn raw(name: &str, t: u32) -> sys::virTypedParameter {
        let mut p = sys::virTypedParameter::default();
        for (dst, src) in p.field.iter_mut().zip(name.bytes()) {
            *dst = src as std::os::raw::c_char;
        }
        p.type_ = t as i32;
        p
    }

    #[test]
    fn copies_every_type_and_looks_up_by_name() {
        let text = CString::new("running").expect("no NUL");
        let mut v = vec![
            raw("a.int", sys::VIR_TYPED_PARAM_INT),
            raw("a.uint", sys::VIR_TYPED_PARAM_UINT),
            raw("a.llong", sys::VIR_TYPED_PARAM_LLONG),
            raw("a.ullong", sys::VIR_TYPED_PARAM_ULLONG),
            raw("a.double", sys::VIR_TYPED_PARAM_DOUBLE),
            raw("a.bool", sys::VIR_TYPED_PARAM_BOOLEAN),
            raw("a.str", sys::VIR_TYPED_PARAM_STRING),
            raw("a.null", sys::VIR_TYPED_PARAM_STRING),
            raw("a.future", 99),
        ];
        v[0].value.i = -5;
        v[1].value.ui = 7;
        v[2].value.l = -9_000_000_000;
        v[3].value.ul = u64::MAX;
        v[4].value.d = 0.5;
        v[5].value.b = 1;
        v[6].value.s = text.as_ptr() as *mut _;
        v[7].value.s = std::ptr::null_mut();
        // SAFETY: v holds v.len() initialised parameters; `text` outlives the call.
        let p = unsafe { TypedParams::copy_from(v.as_ptr(), v.len()) };
        assert_eq!(p.len(), 9);
        assert_eq!(p.get("a.int"), Some(&ParamValue::Int(-5)));
        assert_eq!(p.get_u64("a.int"), None, "negative is not a u64");
        assert_eq!(p.get_i64("a.int"), Some(-5));
        assert_eq!(p.get_u64("a.uint"), Some(7));
        assert_eq!(p.get_i64("a.llong"), Some(-9_000_000_000));
        assert_eq!(p.get_u64("a.ullong"), Some(u64::MAX));
        assert_eq!(p.get_i64("a.ullong"), None, "does not fit");
        assert_eq!(p.get("a.double"), Some(&ParamValue::Double(0.5)));
        assert_eq!(p.get_u64("a.double"), None);
        assert_eq!(p.get("a.bool"), Some(&ParamValue::Bool(true)));
        assert_eq!(p.get_str("a.str"), Some("running"));
        assert_eq!(p.get_str("a.null"), Some(""));
        assert_eq!(p.get("a.future"), Some(&ParamValue::Unknown(99)));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn field_without_nul_is_bounded() {
        let mut p = sys::virTypedParameter::default();
        for c in p.field.iter_mut() {
            *c = b'x' as std::os::raw::c_char;
        }
        p.type_ = sys::VIR_TYPED_PARAM_INT as i32;
        // SAFETY: one initialised parameter.
        let tp = unsafe { TypedParams::copy_from(&p, 1) };
        let (name, _) = tp.iter().next().expect("one");
        assert_eq!(name.len(), p.field.len());
    }

    #[test]
    fn null_array_is_empty() {
        // SAFETY: NULL with n == 0 is allowed by copy_from's contract.
        let tp = unsafe { TypedParams::copy_from(std::ptr::null(), 0) };
        assert!(tp.is_empty());
    }
}
