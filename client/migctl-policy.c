/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Placeholder. */
#include "util.h"
