# Kernel entry points.
#
# _start: the boot CPU, entered from PALcode's SWPPAL at PS=IPL 7 with
#   $27 = entry address, $18 = physical address of the console's PCB and
#   $sp on the PALcode's own 8 KB stack (see docs/qemu.md §1.3).
# secondary_start: every other CPU, entered from the HWRPB CPU_restart
#   address with $27 = CPU_restart_data (we store this same address there)
#   and $sp = the hwpcb.ksp the boot CPU prepared for it.
#
# Both establish gp, register it as the kernel gp (wrkgp) and call into Rust:
#   alpha_boot_main(pcb_phys: u64) -> !
#   alpha_secondary_main(pcb_phys: u64) -> !
# Rust functions with the Rust ABI and scalar arguments get the Alpha C
# convention from the GCC backend, which is what makes these calls work.

	.set noreorder
	.set noat
	.text
	.align 4
	.globl _start
	.type _start, @function
_start:
	br	$27, 1f
1:	ldgp	$29, 0($27)
	lda	$30, boot_stack_top
	mov	$18, $9			# keep the console PCB address (callee-saved)

	# Zero .bss (QEMU's loader already does; real SRM may not).
	lda	$1, __bss_start
	lda	$2, __bss_end
2:	cmpult	$1, $2, $3
	beq	$3, 3f
	stq	$31, 0($1)
	lda	$1, 8($1)
	br	$31, 2b
3:
	mov	$29, $16
	call_pal 0x37			# wrkgp
	mov	$9, $16
	jsr	$26, alpha_boot_main
	call_pal 0x00			# not reached: halt
	.size _start, . - _start

	.align 4
	.globl secondary_start
	.type secondary_start, @function
secondary_start:
	ldgp	$29, 0($27)
	mov	$18, $9			# physical address of this CPU's hwpcb
	mov	$29, $16
	call_pal 0x37			# wrkgp
	mov	$9, $16
	jsr	$26, alpha_secondary_main
	call_pal 0x00
	.size secondary_start, . - secondary_start

	.section .bss
	# Aligned to its size (2^16): cpus::this() finds the guard word at the
	# base of whatever kernel stack it runs on by clearing the low bits.
	.align 16
	.globl boot_stack
boot_stack:
	.skip	65536
	.globl boot_stack_top
boot_stack_top:
