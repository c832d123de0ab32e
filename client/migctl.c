/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Placeholder. */
int main(void) { return 0; }
