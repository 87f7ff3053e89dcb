/* status.c: NTSTATUS -> Win32 error translation, the per-thread last error, and the names and
 * messages of Win32 errors. Shared by every layer, like ntdll's RtlNtStatusToDosError: one
 * table, so each surprising mapping (STATUS_ALREADY_COMMITTED -> 5, STATUS_NOT_COMMITTED ->
 * 487) is written once. Pairs from Wine's dlls/ntdll/error.h as listed in
 * ../shared/reference/virtual-memory.md section 0.
 */
#include "internal.h"

static const struct {
    NTSTATUS status;
    DWORD error;
} status_table[] = {
    {STATUS_SUCCESS, ERROR_SUCCESS},
    {STATUS_INVALID_PARAMETER, ERROR_INVALID_PARAMETER},
    {STATUS_INVALID_PAGE_PROTECTION, ERROR_INVALID_PARAMETER},
    {STATUS_UNABLE_TO_FREE_VM, ERROR_INVALID_PARAMETER},
    {STATUS_WORKING_SET_LIMIT_RANGE, ERROR_INVALID_PARAMETER},
    {STATUS_CONFLICTING_ADDRESSES, ERROR_INVALID_ADDRESS},
    {STATUS_NOT_MAPPED_VIEW, ERROR_INVALID_ADDRESS},
    {STATUS_NOT_COMMITTED, ERROR_INVALID_ADDRESS},
    {STATUS_FREE_VM_NOT_AT_BASE, ERROR_INVALID_ADDRESS},
    {STATUS_MEMORY_NOT_ALLOCATED, ERROR_INVALID_ADDRESS},
    {STATUS_NO_MEMORY, ERROR_NOT_ENOUGH_MEMORY},
    {STATUS_SECTION_TOO_BIG, ERROR_NOT_ENOUGH_MEMORY},
    {STATUS_ACCESS_VIOLATION, ERROR_NOACCESS},
    {STATUS_IN_PAGE_ERROR, ERROR_SWAPERROR},
    {STATUS_ACCESS_DENIED, ERROR_ACCESS_DENIED},
    {STATUS_ALREADY_COMMITTED, ERROR_ACCESS_DENIED},
    {STATUS_INVALID_VIEW_SIZE, ERROR_ACCESS_DENIED},
    {STATUS_MAPPED_ALIGNMENT, ERROR_MAPPED_ALIGNMENT},
    {STATUS_MAPPED_FILE_SIZE_ZERO, ERROR_FILE_INVALID},
    {STATUS_INFO_LENGTH_MISMATCH, ERROR_BAD_LENGTH},
    {STATUS_INVALID_HANDLE, ERROR_INVALID_HANDLE},
    {STATUS_NOT_SUPPORTED, ERROR_NOT_SUPPORTED},
    {STATUS_PRIVILEGE_NOT_HELD, ERROR_PRIVILEGE_NOT_HELD},
    {STATUS_COMMITMENT_LIMIT, ERROR_COMMITMENT_LIMIT},
    {(NTSTATUS)0xC0000001 /* STATUS_UNSUCCESSFUL */, ERROR_GEN_FAILURE},
    {STATUS_OBJECT_NAME_NOT_FOUND, ERROR_FILE_NOT_FOUND},
    {STATUS_INVALID_FILE_FOR_SECTION, ERROR_BAD_EXE_FORMAT},
    {STATUS_INVALID_IMAGE_NOT_MZ, ERROR_BAD_EXE_FORMAT},
    {(NTSTATUS)0xC0000088 /* STATUS_NOT_MAPPED_DATA */, ERROR_INVALID_ADDRESS},
    {PA_STATUS_BUFFER_EXPORTED, PA_ERROR_BUFFER_EXPORTED},
    {PA_STATUS_OWNED, ERROR_ACCESS_DENIED},
};

DWORD pa_nt_status_to_dos_error(NTSTATUS status)
{
    for (size_t i = 0; i < sizeof status_table / sizeof *status_table; i++)
        if (status_table[i].status == status) return status_table[i].error;
    return ERROR_GEN_FAILURE; /* not in the table: say so rather than invent a code */
}

/* initial-exec: no allocation on first use, even when loaded as a preload library. */
__thread DWORD _pa_last_error __attribute__((tls_model("initial-exec"), visibility("hidden")));
#define last_error _pa_last_error

DWORD pa_get_last_error(void) { return last_error; }
void pa_set_last_error(DWORD code) { last_error = code; }
void _pa_set_last_status(NTSTATUS status) { last_error = pa_nt_status_to_dos_error(status); }

/* Win32 messages as FormatMessage gives them (US English). */
static const struct {
    DWORD code;
    const char *name, *message;
} error_table[] = {
    {ERROR_SUCCESS, "ERROR_SUCCESS", "The operation completed successfully."},
    {ERROR_FILE_NOT_FOUND, "ERROR_FILE_NOT_FOUND", "The system cannot find the file specified."},
    {ERROR_ACCESS_DENIED, "ERROR_ACCESS_DENIED", "Access is denied."},
    {ERROR_INVALID_HANDLE, "ERROR_INVALID_HANDLE", "The handle is invalid."},
    {ERROR_NOT_ENOUGH_MEMORY, "ERROR_NOT_ENOUGH_MEMORY",
     "Not enough memory resources are available to process this command."},
    {ERROR_OUTOFMEMORY, "ERROR_OUTOFMEMORY",
     "Not enough memory resources are available to complete this operation."},
    {ERROR_BAD_LENGTH, "ERROR_BAD_LENGTH",
     "The program issued a command but the command length is incorrect."},
    {ERROR_GEN_FAILURE, "ERROR_GEN_FAILURE", "A device attached to the system is not functioning."},
    {ERROR_NOT_SUPPORTED, "ERROR_NOT_SUPPORTED", "The request is not supported."},
    {ERROR_INVALID_PARAMETER, "ERROR_INVALID_PARAMETER", "The parameter is incorrect."},
    {ERROR_INSUFFICIENT_BUFFER, "ERROR_INSUFFICIENT_BUFFER",
     "The data area passed to a system call is too small."},
    {ERROR_ALREADY_EXISTS, "ERROR_ALREADY_EXISTS",
     "Cannot create a file when that file already exists."},
    {ERROR_BAD_EXE_FORMAT, "ERROR_BAD_EXE_FORMAT", "The image is not a valid Win32 application."},
    {ERROR_NO_MORE_ITEMS, "ERROR_NO_MORE_ITEMS", "No more data is available."},
    {ERROR_INVALID_ADDRESS, "ERROR_INVALID_ADDRESS", "Attempt to access invalid address."},
    {ERROR_NOACCESS, "ERROR_NOACCESS", "Invalid access to memory location."},
    {ERROR_SWAPERROR, "ERROR_SWAPERROR", "Error performing inpage operation."},
    {ERROR_FILE_INVALID, "ERROR_FILE_INVALID",
     "The volume for a file has been externally altered so that the opened file is no longer "
     "valid."},
    {ERROR_MAPPED_ALIGNMENT, "ERROR_MAPPED_ALIGNMENT",
     "The base address or the file offset specified does not have the proper alignment."},
    {ERROR_PRIVILEGE_NOT_HELD, "ERROR_PRIVILEGE_NOT_HELD",
     "A required privilege is not held by the client."},
    {ERROR_COMMITMENT_LIMIT, "ERROR_COMMITMENT_LIMIT",
     "The paging file is too small for this operation to complete."},
    {PA_ERROR_BUFFER_EXPORTED, "PA_ERROR_BUFFER_EXPORTED",
     "The memory is exported to a live buffer (a memoryview) that the change would invalidate."},
};

static int error_index(DWORD code)
{
    for (size_t i = 0; i < sizeof error_table / sizeof *error_table; i++)
        if (error_table[i].code == code) return (int)i;
    return -1;
}

const char *pa_error_name(DWORD code)
{
    int i = error_index(code);
    return i < 0 ? NULL : error_table[i].name;
}

const char *pa_error_message(DWORD code)
{
    int i = error_index(code);
    return i < 0 ? NULL : error_table[i].message;
}
