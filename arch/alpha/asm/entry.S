# PALcode exception entry points (registered with wrent on every CPU).
#
# PALcode has already pushed its 48-byte frame (PS, PC, GP, A0, A1, A2) at
# $sp, loaded gp with the kernel gp (wrkgp) and put the entry's arguments in
# $16-$18. Each stub below extends that frame with the integer registers
# (every one for an exception; for an interrupt all but the callee-saved
# $9-$15, see int_common):
#
#   $sp + 0   .. 255 : regs[0..31], indexed by register number; slots 16-18
#                      hold the entry arguments, slot 31 the entry number
#   $sp + 256 .. 303 : the PALcode frame
#
# (struct TrapFrame in arch/alpha/src/trap.rs), calls
#   alpha_trap(frame: *mut TrapFrame)
# and restores. rti pops the PALcode frame, which restores PS (so the IPL),
# PC, gp and the original $16-$18; the IPL it restores is noted first.

	.set noreorder
	.set noat
	.text

#define FRAME 256

	.macro SAVE_AND_CALL entry, common, callee_saved
	lda	$sp, -FRAME($sp)
	stq	$0, 0($sp)
	stq	$1, 8($sp)
	stq	$2, 16($sp)
	stq	$3, 24($sp)
	stq	$4, 32($sp)
	stq	$5, 40($sp)
	stq	$6, 48($sp)
	stq	$7, 56($sp)
	stq	$8, 64($sp)
	.if \callee_saved
	stq	$9, 72($sp)
	stq	$10, 80($sp)
	stq	$11, 88($sp)
	stq	$12, 96($sp)
	stq	$13, 104($sp)
	stq	$14, 112($sp)
	stq	$15, 120($sp)
	.endif
	stq	$16, 128($sp)
	stq	$17, 136($sp)
	stq	$18, 144($sp)
	stq	$19, 152($sp)
	stq	$20, 160($sp)
	stq	$21, 168($sp)
	stq	$22, 176($sp)
	stq	$23, 184($sp)
	stq	$24, 192($sp)
	stq	$25, 200($sp)
	stq	$26, 208($sp)
	stq	$27, 216($sp)
	stq	$28, 224($sp)
	stq	$29, 232($sp)
	lda	$1, FRAME+48($sp)
	stq	$1, 240($sp)		# $sp before the exception
	lda	$1, \entry($31)
	stq	$1, 248($sp)
	mov	$sp, $16
	br	$31, \common
	.endm

	.align 4
	.globl trap_common
	.type trap_common, @function
trap_common:
	jsr	$26, alpha_trap
	ldgp	$29, 0($26)
	ldq	$9, 72($sp)
	ldq	$10, 80($sp)
	ldq	$11, 88($sp)
	ldq	$12, 96($sp)
	ldq	$13, 104($sp)
	ldq	$14, 112($sp)
	ldq	$15, 120($sp)
$Lrestore_scratch:
	# rti restores the interrupted PS, so its IPL: note that level in the
	# stack's IPL quadword (cpus::IPL_NOTE, as pal_swpipl_noted does), as
	# an interrupt handler leaves the IPL where it raised it (interrupt.rs).
	ldq	$0, FRAME($sp)
	zapnot	$sp, 0xfc, $1
	and	$0, 7, $0
	stq	$0, 8($1)
	ldq	$0, 0($sp)
	ldq	$1, 8($sp)
	ldq	$2, 16($sp)
	ldq	$3, 24($sp)
	ldq	$4, 32($sp)
	ldq	$5, 40($sp)
	ldq	$6, 48($sp)
	ldq	$7, 56($sp)
	ldq	$8, 64($sp)
	ldq	$19, 152($sp)
	ldq	$20, 160($sp)
	ldq	$21, 168($sp)
	ldq	$22, 176($sp)
	ldq	$23, 184($sp)
	ldq	$24, 192($sp)
	ldq	$25, 200($sp)
	ldq	$26, 208($sp)
	ldq	$27, 216($sp)
	ldq	$28, 224($sp)
	lda	$sp, FRAME($sp)
	call_pal 0x3f			# rti
	.size trap_common, . - trap_common

# An interrupt saves and restores only what alpha_trap (or, for an IPI,
# alpha_ipi_interrupt) may change: the callee-saved $9-$15 come back from
# it as from any call (the calling convention), and no handler reads or
# edits them in the frame, whose slots 9-15 stay unwritten. Exceptions
# save everything: a fault's report may show any register.
	.align 4
	.globl int_common
	.type int_common, @function
int_common:
	ldq	$1, 128($16)		# the interrupt's type (PALcode's a0)
	bne	$1, 1f
	jsr	$26, alpha_ipi_interrupt	# an IPI: interrupt.rs, no frame needed
	ldgp	$29, 0($26)
	br	$31, $Lrestore_scratch
1:	jsr	$26, alpha_trap
	ldgp	$29, 0($26)
	br	$31, $Lrestore_scratch
	.size int_common, . - int_common

#define ENTRY(name, n, common, callee) .align 4; .globl name; .type name, @function; name: SAVE_AND_CALL n, common, callee; .size name, . - name

ENTRY(ent_int, 0, int_common, 0)
ENTRY(ent_arith, 1, trap_common, 1)
ENTRY(ent_mm, 2, trap_common, 1)
ENTRY(ent_if, 3, trap_common, 1)
ENTRY(ent_una, 4, trap_common, 1)
ENTRY(ent_sys, 5, trap_common, 1)
