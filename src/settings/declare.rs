//! The `declare!` macro: from one declaration per setting (its doc, type,
//! default, bounds and variable) it writes everything that setting needs:
//!
//! - a typed clap field (`--flag` and `env`), whose value parser checks the
//!   bounds and whose help states the meaning, the default and the bounds;
//! - a key of the TOML file ([`FileSettings`](super::FileSettings), which
//!   refuses unknown keys), read through the same parser;
//! - a field of the resolved struct, its `Default` and its `resolve`;
//! - a [`Setting`](super::Setting) row, from which the README's settings
//!   table and the errors are made.
//!
//! A group is a flags struct (flattened into the commands that take it) and
//! a values struct (what the program uses).

/// See the module documentation; the settings themselves are in
/// `declared.rs`.
macro_rules! declare {
    (@range) => { None };
    (@range $min:literal, $max:literal) => { Some(($min, $max)) };

    (@setting $name:ident, $env:literal, $default:literal, [$($doc:literal),+] $(, $min:literal, $max:literal)?) => {
        $crate::settings::Setting {
            name: stringify!($name),
            env: $env,
            default: $default,
            range: declare!(@range $($min, $max)?),
            meaning: concat!($($doc),+).trim_ascii(),
        }
    };

    ($(
        $(#[doc = $group_doc:literal])*
        group $flags:ident => $values:ident {
            $(
                $(#[doc = $doc:literal])+
                $(#[arg($($extra:tt)*)])*
                $name:ident: $ty:ty = $default:literal
                    $(, $min:literal ..= $max:literal)?
                    , env $env:literal;
            )*
        }
    )*) => {
        $(
            #[doc = concat!("The flags and `SWITCHBOARD_*` variables of [`", stringify!($values), "`]; unset ones fall back to the file, then to the default.")]
            #[derive(clap::Args, Clone, Debug, Default)]
            pub struct $flags {
                $(
                    #[arg(
                        long,
                        env = $env,
                        value_parser = $crate::settings::parser::<$ty>(declare!(@range $($min, $max)?)),
                        help = declare!(@setting $name, $env, $default, [$($doc),+] $(, $min, $max)?).help(),
                    )]
                    $(#[arg($($extra)*)])*
                    pub $name: Option<$ty>,
                )*
            }

            $(#[doc = $group_doc])*
            #[derive(Clone, Debug, PartialEq)]
            pub struct $values {
                $(
                    $(#[doc = $doc])+
                    pub $name: $ty,
                )*
            }

            impl $values {
                /// The declaration of each setting of the group, in order.
                pub const SETTINGS: &'static [$crate::settings::Setting] = &[
                    $(declare!(@setting $name, $env, $default, [$($doc),+] $(, $min, $max)?),)*
                ];

                /// Each setting from its flag or variable, else the file,
                /// else its default.
                pub fn resolve(
                    flags: &$flags,
                    file: &$crate::settings::FileSettings,
                ) -> Result<Self, $crate::settings::SettingError> {
                    Ok(Self {
                        $(
                            $name: $crate::settings::pick(
                                &flags.$name,
                                file.$name.as_ref(),
                                &declare!(@setting $name, $env, $default, [$($doc),+] $(, $min, $max)?),
                            )?,
                        )*
                    })
                }
            }

            impl Default for $values {
                /// Every setting at its default.
                fn default() -> Self {
                    match Self::resolve(&$flags::default(), &$crate::settings::FileSettings::default()) {
                        Ok(values) => values,
                        // The declared defaults are constants, checked by a unit test.
                        Err(e) => panic!("a declared default is wrong: {e}"),
                    }
                }
            }
        )*

        /// The TOML settings file: every key of every group, each read as
        /// the text a flag would give. An unknown key is an error.
        #[derive(Clone, Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileSettings {
            $($(
                pub(super) $name: Option<toml::Value>,
            )*)*
        }

        /// Every declared setting, group by group.
        pub const DECLARED: &[&[$crate::settings::Setting]] = &[$($values::SETTINGS),*];
    };
}

pub(super) use declare;
