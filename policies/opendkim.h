#pragma once
/// libopendkim's <opendkim/dkim.h>, includable from C++ (DESIGN.md, "Library
/// quirks"): it spells booleans C's way (`_Bool`). Include this, never
/// <opendkim/dkim.h> directly. Private to policies/.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#define _Bool bool
#include <opendkim/dkim.h>
#undef _Bool
