# The SRM Console Callback Routines (CRB) from the kernel.
#
#   crb_dispatch(desc: u64, code: u64, a1: u64, a2: u64, a3: u64, nargs: u64) -> u64
#
# The console's dispatch routine follows the OpenVMS calling standard
# (docs/hardware.md §3): $27 = VA of its procedure descriptor, whose
# second quadword is the code address; $16 = function code; $17.. = the
# arguments; $25 = the argument count; result in $0. It preserves $2-$15 and
# $30 and may clobber $0, $1, $16-$28 and gp, so this stub saves the return
# address and gp itself and reloads them afterwards. Callers serialise calls
# and run at IPL 7 (arch/alpha/src/srm.rs).

	.set noreorder
	.set noat
	.text
	.align 4
	.globl crb_dispatch
	.type crb_dispatch, @function
crb_dispatch:
	lda	$30, -16($30)
	stq	$26, 0($30)
	stq	$29, 8($30)
	mov	$16, $27		# the procedure descriptor
	mov	$17, $16		# function code
	mov	$18, $17		# arguments
	mov	$19, $18
	mov	$20, $19
	mov	$21, $25		# argument count
	ldq	$1, 8($27)		# entry address (descriptor + 8)
	jsr	$26, ($1)
	ldq	$26, 0($30)
	ldq	$29, 8($30)
	lda	$30, 16($30)
	ret	$31, ($26), 1
	.size crb_dispatch, . - crb_dispatch
