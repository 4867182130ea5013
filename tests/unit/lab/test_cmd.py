"""The WinRS side: cmd.exe's subset and powershell.exe's command line."""

from __future__ import annotations

import pathlib


def test_echo_and_exit_codes_chain_with_and_and_or(cmd):
    assert cmd("echo hi && exit /b 3") == (3, b"hi \r\n", b"")  # cmd keeps the blank before &&
    assert cmd("cmd.exe", "/c", "echo a || echo b & echo c") == (0, b"a \r\nc\r\n", b"")


def test_unknown_commands_fail_like_cmd(cmd):
    assert cmd("frob --x") == (9009, b"", b"'frob' is not recognized as an internal or external command,\r\n"
                                         b"operable program or batch file.\r\n")


def test_hostname_whoami_and_ver_answer_for_this_host(cmd):
    assert cmd("hostname")[1] == b"WIN-LAB1\r\n"
    assert cmd("whoami")[1] == b"win-lab1\\vagrant\r\n"
    assert b"Microsoft Windows [Version 10.0." in cmd("ver")[1]


def test_redirection_writes_files_that_type_reads_back(cmd, root: pathlib.Path):
    assert cmd("echo one > C:\\Windows\\Temp\\o.txt & echo two >> C:\\Windows\\Temp\\o.txt")[0] == 0
    assert (root / "Windows" / "Temp" / "o.txt").read_bytes() == b"one  \r\ntwo \r\n"  # cmd keeps the blanks around "> f " too
    assert cmd("type C:\\windows\\temp\\O.TXT")[1] == b"one  \r\ntwo \r\n"  # cmd keeps the blanks around "> f " too
    assert cmd("type C:\\nope.txt") == (1, b"", b"The system cannot find the file specified.\r\n")


def test_paths_that_lead_nowhere_fail_as_cmd_reports_them(cmd):
    missing = b"The system cannot find the path specified.\r\n"
    for line in ("type C:\\nope\\f.txt", "type D:\\f.txt", "cd C:\\nope", "echo a > C:\\nope\\f.txt",
                 "echo a > D:\\f.txt", "dir D:\\"):  # a missing directory, or a drive the host does not have
        assert cmd(line) == (1, b"", missing), line
    rc, out, err = cmd("dir C:\\nope")
    assert (rc, err) == (1, b"File Not Found\r\n") and out.startswith(b" Volume in drive C has no label.")


def test_set_assigns_and_percent_variables_expand(cmd):
    assert cmd("set LABVAR=x ü&& echo %LABVAR%-%COMPUTERNAME%")[1] == "x ü-WIN-LAB1\r\n".encode("cp437")


def test_dir_lists_the_directory_under_root(cmd, root: pathlib.Path):
    (root / "Windows" / "Temp" / "listed.txt").write_bytes(b"12345")
    rc, out, _ = cmd("dir C:\\Windows\\Temp")
    assert rc == 0 and b" Directory of C:\\Windows\\Temp" in out and b"5 listed.txt" in out


def test_powershell_exe_reads_stdin_lines_as_input(cmd):
    rc, out, _ = cmd("powershell.exe", "-NoProfile", "-Command", "$input | ForEach-Object { [int]$_ * 2 }",
                     stdin=[b"1\r\n2", b"1\r\n"])
    assert (rc, out) == (0, b"2\r\n42\r\n")


def test_powershell_exe_exit_code_is_one_after_a_terminating_error(cmd):
    rc, out, err = cmd("powershell", "-Command", "throw 'x'")
    assert rc == 1 and b'<S S="Error">x_x000D__x000A_</S>' in err


def test_winrs_arguments_are_appended_verbatim_not_quoted(cmd) -> None:
    # pywinrm (ansible.builtin.winrm) sends the whole powershell.exe tail as one rsp:Arguments element.
    import base64
    encoded = base64.b64encode("Write-Output 'verbatim'".encode("utf-16-le")).decode()
    rc, out, err = cmd("powershell.exe", f"-NoProfile -NonInteractive -EncodedCommand {encoded}")
    assert (rc, out, err) == (0, b"verbatim\r\n", b"")
    rc, out, _ = cmd("echo", "a  b", '"quoted"')
    assert (rc, out) == (0, b'a  b "quoted"\r\n')


def test_command_lines_split_by_microsofts_documented_examples():
    # "Parsing C++ command-line arguments" (Microsoft C++ documentation): its table of example results
    from tests.lab.pwsh.command_line import command_line_to_argv, split_tail
    assert split_tail('"a b c" d e') == ["a b c", "d", "e"]
    assert split_tail(r'"ab\"c" "\\" d') == ['ab"c', "\\", "d"]
    assert split_tail(r'a\\\b d"e f"g h') == [r"a\\\b", "de fg", "h"]
    assert split_tail(r'a\\\"b c d') == [r'a\"b', "c", "d"]
    assert split_tail(r'a\\\\"b c" d e') == [r"a\\b c", "d", "e"]
    assert split_tail('a"b"" c d') == ['ab" c d']
    assert split_tail('"" x') == ["", "x"]  # a quoted empty argument is an argument
    # the program name has no escapes: it ends at its closing quote, or at a blank
    assert command_line_to_argv(r'"C:\Program Files\x\" a') == [r"C:\Program Files\x" + "\\", "a"]
    assert command_line_to_argv(r'C:\Windows\cmd.exe /c "echo a"') == [r"C:\Windows\cmd.exe", "/c", "echo a"]


def test_powershell_exe_gets_its_arguments_split_as_windows_splits_them(cmd):
    assert cmd('powershell.exe -Command "Write-Output ""a b"""') == (0, b"a b\r\n", b"")
