using System.Diagnostics;
using System.Text;
using Notice.Core.Tasks;
using SkiaSharp;
using Xunit.Abstractions;

namespace Notice.Tests;

/// <summary>A temporary folder, deleted after the test.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "notice-tasks-" + Guid.NewGuid().ToString("N")));

    public string Path { get; }

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Small images and files for fake dataset layouts.</summary>
internal static class FakeData
{
    /// <summary>Writes a small solid-color image (PNG or JPEG by extension), creating its folder.</summary>
    public static string Image(string path, SKColor color, int size = 24)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var bitmap = new SKBitmap(size, size);
        bitmap.Erase(color);
        var format = Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase) ? SKEncodedImageFormat.Png : SKEncodedImageFormat.Jpeg;
        using var data = bitmap.Encode(format, 90);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    /// <summary>A file with an image's name that no decoder reads.</summary>
    public static string Garbage(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "this is not an image");
        return path;
    }

    public static (byte R, byte G, byte B)[] Pixels(string path, out int width, out int height)
    {
        using var bitmap = SKBitmap.Decode(path) ?? throw new InvalidOperationException($"cannot decode {path}");
        (width, height) = (bitmap.Width, bitmap.Height);
        var pixels = new (byte, byte, byte)[width * height];
        for (var y = 0; y < height; y++)
        for (var x = 0; x < width; x++)
        {
            var c = bitmap.GetPixel(x, y);
            pixels[y * width + x] = (c.Red, c.Green, c.Blue);
        }
        return pixels;
    }

    public static byte[] Gray(string path)
    {
        var pixels = Pixels(path, out _, out _);
        return [.. pixels.Select(p => p.R)];
    }
}

public class PairsManifestTests
{
    private static PairRecord Sample(string id, string? mask = "img/a-m.png") => new()
    {
        Id = id, Task = "shapes-color", Category = "color",
        Image = "img/a.png", CorruptImage = "img/a-c.png", Mask = mask,
        Prompt = "Is the shape red or blue?", CorruptPrompt = "Is the shape green or pink?",
        Answer = "red", WrongAnswer = "blue",
    };

    private static void WriteImages(TempFolder dir)
    {
        foreach (var name in new[] { "img/a.png", "img/a-c.png", "img/a-m.png" })
            FakeData.Image(dir[name], SKColors.Red);
    }

    [Fact]
    public void Write_UsesTheContractNamesInOrder_AndReadRoundTrips()
    {
        using var dir = new TempFolder();
        WriteImages(dir);
        var manifest = dir["pairs.jsonl"];
        PairsManifest.Write(manifest, [Sample("x-0"), Sample("x-1", mask: null)]);

        var lines = File.ReadAllLines(manifest);
        Assert.Equal(2, lines.Length);
        Assert.Equal(
            """{"id":"x-0","task":"shapes-color","category":"color","image":"img/a.png","corrupt_image":"img/a-c.png","mask":"img/a-m.png","prompt":"Is the shape red or blue?","corrupt_prompt":"Is the shape green or pink?","answer":"red","wrong_answer":"blue"}""",
            lines[0]);
        Assert.DoesNotContain("mask", lines[1]);

        var read = PairsManifest.Read(manifest);
        Assert.Equal([Sample("x-0"), Sample("x-1", mask: null)], read);
    }

    [Fact]
    public void Resolve_MakesPathsAbsoluteAgainstTheManifestFolder()
    {
        using var dir = new TempFolder();
        var manifest = dir["out/pairs.jsonl"];
        var resolved = PairsManifest.Resolve(manifest, Sample("x") with { CorruptImage = "../data/b.jpg" });
        Assert.Equal(dir["out/img/a.png"], resolved.Image);
        Assert.Equal(dir["data/b.jpg"], resolved.CorruptImage);
        Assert.Equal(dir["out/img/a-m.png"], resolved.Mask);
        Assert.Equal(dir["data/b.jpg"], PairsManifest.ResolvePath(manifest, "../data/b.jpg"));
        Assert.Equal("../data/b.jpg", PairsManifest.RelativePath(dir["out"], dir["data/b.jpg"]));
    }

    [Fact]
    public void Read_MalformedLine_NamesFileAndLine()
    {
        using var dir = new TempFolder();
        WriteImages(dir);
        var manifest = dir["pairs.jsonl"];
        PairsManifest.Write(manifest, [Sample("x-0")]);
        File.AppendAllText(manifest, "\n{\"id\": \"x-1\", \"task\": \n");

        var e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal(manifest, e.FilePath);
        Assert.Equal(3, e.LineNumber); // line 2 is blank and skipped
        Assert.Contains("pairs.jsonl:3", e.Message);
        Assert.Contains("malformed JSON", e.Message);
    }

    [Theory]
    [InlineData("answer")]
    [InlineData("corrupt_prompt")]
    [InlineData("id")]
    public void Read_MissingRequiredField_NamesTheField(string field)
    {
        using var dir = new TempFolder();
        WriteImages(dir);
        var manifest = dir["pairs.jsonl"];
        PairsManifest.Write(manifest, [Sample("x-0"), Sample("x-1")]);
        var lines = File.ReadAllLines(manifest);
        var node = System.Text.Json.Nodes.JsonNode.Parse(lines[1])!.AsObject();
        node.Remove(field);
        lines[1] = node.ToJsonString();
        File.WriteAllLines(manifest, lines);

        var e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal(2, e.LineNumber);
        Assert.Equal(field, e.Field);
        Assert.Contains($"pairs.jsonl:2: field '{field}': missing required field", e.Message);
    }

    [Fact]
    public void Read_WrongType_DuplicateId_AndEqualOptions_AreErrors()
    {
        using var dir = new TempFolder();
        WriteImages(dir);
        var manifest = dir["pairs.jsonl"];

        File.WriteAllText(manifest, """{"id":3,"task":"t","category":"c","image":"img/a.png","corrupt_image":"img/a-c.png","prompt":"p","corrupt_prompt":"q","answer":"a","wrong_answer":"b"}""");
        var e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal("id", e.Field);
        Assert.Contains("must be a string", e.Message);

        PairsManifest.Write(manifest, [Sample("x-0"), Sample("x-0")]);
        e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal((2, "id"), (e.LineNumber!.Value, e.Field!));

        PairsManifest.Write(manifest, [Sample("x-0") with { WrongAnswer = "Red" }]);
        e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal("wrong_answer", e.Field);
    }

    [Theory]
    [InlineData("image")]
    [InlineData("corrupt_image")]
    [InlineData("mask")]
    public void Read_MissingImageFile_NamesLineAndField(string field)
    {
        using var dir = new TempFolder();
        WriteImages(dir);
        var manifest = dir["pairs.jsonl"];
        var gone = field switch { "image" => "img/a.png", "corrupt_image" => "img/a-c.png", _ => "img/a-m.png" };
        PairsManifest.Write(manifest, [Sample("x-0"), Sample("x-1")]);
        File.Delete(dir[gone]);

        var e = Assert.Throws<TaskInputException>(() => PairsManifest.Read(manifest));
        Assert.Equal(1, e.LineNumber);
        Assert.Equal(field, e.Field);
        Assert.Contains(gone, e.Message);
        Assert.Equal(2, PairsManifest.Read(manifest, checkImages: false).Count);
    }

    [Fact]
    public void Read_MissingFile_NamesIt()
    {
        var e = Assert.Throws<TaskInputException>(() => PairsManifest.Read("/nonexistent/pairs.jsonl"));
        Assert.Equal("/nonexistent/pairs.jsonl", e.FilePath);
    }

    [Fact]
    public void Write_RefusesRecordsWithoutCorruptPrompt()
    {
        using var dir = new TempFolder();
        Assert.Throws<ArgumentException>(() => PairsManifest.Write(dir["p.jsonl"], [Sample("x") with { CorruptPrompt = null }]));
    }
}

public class StrCorruptionTests
{
    private static PairRecord Rec(string id, string a, string b, string category = "verb", string task = "t") => new()
    {
        Id = id, Task = task, Category = category, Image = "i.png", CorruptImage = "c.png",
        Prompt = $"Is the man {a} or {b} the horse?", Answer = a, WrongAnswer = b,
    };

    private static readonly Dictionary<string, int> Pieces = new()
    {
        ["riding"] = 1, ["walking"] = 1, ["feeding"] = 2, ["washing"] = 2,
        ["brushing"] = 1, ["leading"] = 1, ["petting"] = 2, ["racing"] = 1,
    };

    private static int Count(string word) => Pieces.GetValueOrDefault(word, 1);

    [Fact]
    public void Assign_SwapsBothOptions_ForSameLengthOptionsOfAnotherSample()
    {
        PairRecord[] records =
        [
            Rec("a", "riding", "walking"),   // 1 + 1
            Rec("b", "feeding", "washing"),  // 2 + 2
            Rec("c", "brushing", "leading"), // 1 + 1
            Rec("d", "petting", "racing"),   // 2 + 1: nothing else has these lengths in either order
        ];
        var result = StrCorruption.Assign(records, Count, seed: 5);

        Assert.Contains(result[0].CorruptPrompt, new[] { "Is the man brushing or leading the horse?", "Is the man leading or brushing the horse?" });
        Assert.Contains(result[2].CorruptPrompt, new[] { "Is the man riding or walking the horse?", "Is the man walking or riding the horse?" });
        Assert.Null(result[1].CorruptPrompt); // 2+2: only its own options
        Assert.Null(result[3].CorruptPrompt);
    }

    [Fact]
    public void Assign_NeverUsesNearSynonyms_KeepsExistingPrompts_AndStaysInCategory()
    {
        var synonyms = new NearSynonyms([["riding", "racing"]]);
        PairRecord[] records =
        [
            Rec("a", "riding", "walking"),
            Rec("b", "racing", "leading"),   // near-synonym of riding: never a replacement for a
            Rec("c", "brushing", "leading", category: "object"),
            Rec("d", "brushing", "sitting") with { CorruptPrompt = "kept" },
        ];
        var result = StrCorruption.Assign(records, null, synonyms, seed: 1);

        // a's only same-category candidates are b (near-synonym) and d (brushing/sitting): d.
        Assert.Contains(result[0].CorruptPrompt, new[] { "Is the man brushing or sitting the horse?", "Is the man sitting or brushing the horse?" });
        Assert.Equal("kept", result[3].CorruptPrompt);
        Assert.Null(result[2].CorruptPrompt); // alone in its category
        foreach (var r in result.Where(r => r.CorruptPrompt is not null && r.Id != "d"))
        {
            Assert.DoesNotContain(r.Answer, r.CorruptPrompt);
            Assert.DoesNotContain(r.WrongAnswer, r.CorruptPrompt);
        }
    }

    [Fact]
    public void Assign_IsDeterministic()
    {
        var records = Enumerable.Range(0, 40).Select(i => Rec($"r{i}", $"w{i}a", $"w{i}b")).ToArray();
        var a = StrCorruption.Assign(records, seed: 3).Select(r => r.CorruptPrompt).ToList();
        var b = StrCorruption.Assign(records, seed: 3).Select(r => r.CorruptPrompt).ToList();
        var c = StrCorruption.Assign(records, seed: 4).Select(r => r.CorruptPrompt).ToList();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.All(a, Assert.NotNull);
    }

    [Fact]
    public void OptionSlots_FindsEitherOrder_WithArticles_AndFixesThem()
    {
        Assert.True(OptionSlots.TryFind("Is the object a circle or a square?", "square", "circle", out var s));
        Assert.Equal(("circle", "square"), (s.First, s.Second));
        Assert.Equal("Is the object an oval or a star?", s.Replace("Is the object a circle or a square?", "oval", "star"));

        Assert.True(OptionSlots.TryFind("Is the man or the woman riding the horse?", "woman", "man", out s));
        Assert.Equal("Is the dog or the cat riding the horse?", s.Replace("Is the man or the woman riding the horse?", "dog", "cat"));

        Assert.False(OptionSlots.TryFind("Is the shape red?", "red", "blue", out _));
    }
}

public class ShapesTaskTests(ITestOutputHelper output)
{
    private static readonly string[] AllTasks = [.. ShapesTaskGenerator.Tasks];

    [Fact]
    public void GenerateForRun_GivesEveryTaskAThirdRoundedUp_Interleaved()
    {
        using var dir = new TempFolder();
        var report = ShapesTaskGenerator.GenerateForRun(dir.Path, samples: 7, seed: 0);
        var records = PairsManifest.Read(report.ManifestPath!);
        Assert.Equal(9, records.Count);
        // The first N samples take every task: the tasks take turns, in order.
        Assert.Equal(Enumerable.Repeat(ShapesTaskGenerator.Tasks.Order(StringComparer.Ordinal), 3).SelectMany(t => t), records.Select(r => r.Task));
        // The same pairs as the plain generator's, 64x64, only reordered.
        using var plain = new TempFolder();
        var expected = PairsManifest.Read(ShapesTaskGenerator.Generate(plain.Path, ShapesTaskGenerator.Tasks, 3, 64, seed: 0).ManifestPath!);
        Assert.Equal(expected.Select(r => (r.Id, r.Prompt, r.Answer)).Order(), records.Select(r => (r.Id, r.Prompt, r.Answer)).Order());
    }

    [Fact]
    public void Generate_WritesBalancedPairs_WithAlignedStrPrompts()
    {
        using var dir = new TempFolder();
        var report = ShapesTaskGenerator.Generate(dir.Path, AllTasks, countPerTask: 40, imageSize: 64, seed: 7);
        Assert.Equal(120, report.Written);

        var manifest = dir["pairs.jsonl"];
        Assert.Equal(manifest, report.ManifestPath);
        var records = PairsManifest.Read(manifest); // also checks every image and mask exists
        Assert.Equal(120, records.Count);

        foreach (var task in AllTasks)
        {
            var mine = records.Where(r => r.Task == task).ToList();
            Assert.Equal(40, mine.Count);
            Assert.Equal(20, mine.Count(CorrectFirst)); // correct option first in exactly half
            var vocabulary = task switch
            {
                ShapesTaskGenerator.ColorTask => ShapesTaskGenerator.Colors,
                ShapesTaskGenerator.ShapeTask => ShapesTaskGenerator.Shapes,
                _ => ShapesTaskGenerator.Sizes,
            };
            var category = task.Split('-')[1];
            foreach (var r in mine)
            {
                Assert.Equal(category, r.Category);
                Assert.StartsWith(task + "-", r.Id);
                Assert.Equal($"img/{r.Id}.png", r.Image);
                Assert.Equal($"img/{r.Id}-c.png", r.CorruptImage);
                Assert.Equal($"img/{r.Id}-m.png", r.Mask);
                Assert.Contains(r.Answer, vocabulary);
                Assert.Contains(r.WrongAnswer, vocabulary);
                Assert.NotEqual(r.Answer, r.WrongAnswer);
                AssertStrAligned(r, TokenCount.OnePerWord);
            }
            if (task == ShapesTaskGenerator.SizeTask)
                Assert.Equal(20, mine.Count(r => r.Answer == "big"));
        }
        Assert.Contains(records, r => r.Prompt.StartsWith("Is the shape ") && r.Category == "color");
        Assert.Contains(records, r => r.Prompt.StartsWith("Is the object a ") && r.Category == "shape");
    }

    private static bool CorrectFirst(PairRecord r) =>
        r.Prompt.IndexOf(r.Answer, StringComparison.Ordinal) < r.Prompt.IndexOf(r.WrongAnswer, StringComparison.Ordinal);

    /// <summary>Corrupt prompt = clean prompt with the two option words replaced by others of equal token length.</summary>
    private static void AssertStrAligned(PairRecord r, Func<string, int> tokenCount)
    {
        var clean = r.Prompt.TrimEnd('?').Split(' ');
        var corrupt = r.CorruptPrompt!.TrimEnd('?').Split(' ');
        Assert.Equal(clean.Length, corrupt.Length);
        var changed = Enumerable.Range(0, clean.Length).Where(i => clean[i] != corrupt[i]).ToList();
        Assert.Equal(2, changed.Count);
        foreach (var i in changed)
        {
            Assert.Contains(clean[i], new[] { r.Answer, r.WrongAnswer });
            Assert.DoesNotContain(corrupt[i], new[] { r.Answer, r.WrongAnswer });
            Assert.Equal(tokenCount(clean[i]), tokenCount(corrupt[i]));
        }
        Assert.NotEqual(corrupt[changed[0]], corrupt[changed[1]]);
    }

    [Fact]
    public async Task Generate_SameSeed_SameBytes_OtherSeed_OtherBytes()
    {
        using var a = new TempFolder();
        using var b = new TempFolder();
        using var c = new TempFolder();
        ShapesTaskGenerator.Generate(a.Path, AllTasks, 12, 64, seed: 3);
        await ShapesTaskGenerator.GenerateAsync(b.Path, AllTasks, 12, 64, seed: 3);
        ShapesTaskGenerator.Generate(c.Path, AllTasks, 12, 64, seed: 4);

        var files = Directory.GetFiles(a.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(a.Path, f)).Order().ToList();
        Assert.Equal(12 * 3 * 3 + 1, files.Count);
        Assert.Equal(files, Directory.GetFiles(b.Path, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(b.Path, f)).Order());
        foreach (var f in files)
            Assert.True(File.ReadAllBytes(a[f]).AsSpan().SequenceEqual(File.ReadAllBytes(b[f])), $"{f} differs between two runs with the same seed");
        Assert.NotEqual(File.ReadAllBytes(a["pairs.jsonl"]), File.ReadAllBytes(c["pairs.jsonl"]));
        Assert.NotEqual(File.ReadAllBytes(a["img/shapes-color-0000.png"]), File.ReadAllBytes(c["img/shapes-color-0000.png"]));
    }

    [Theory]
    [InlineData(64)]
    [InlineData(384)]
    [InlineData(50)]
    public void Images_DifferOnlyInsideTheMask_AndShowTheirAnswers(int size)
    {
        using var dir = new TempFolder();
        ShapesTaskGenerator.Generate(dir.Path, AllTasks, countPerTask: 4, imageSize: size, seed: 11);
        foreach (var r in PairsManifest.Read(dir["pairs.jsonl"]))
        {
            var clean = FakeData.Pixels(dir[r.Image], out var w, out var h);
            var corrupt = FakeData.Pixels(dir[r.CorruptImage], out _, out _);
            var mask = FakeData.Gray(dir[r.Mask!]);
            Assert.Equal((size, size), (w, h));
            Assert.Equal(size * size, mask.Length);

            var inside = 0;
            var differentInside = 0;
            for (var i = 0; i < mask.Length; i++)
            {
                Assert.True(mask[i] is 0 or 255, "mask is binary");
                if (mask[i] == 0)
                    Assert.True(clean[i] == corrupt[i], $"{r.Id}: pixel {i % size},{i / size} outside the mask differs");
                else
                {
                    inside++;
                    if (clean[i] != corrupt[i]) differentInside++;
                }
            }
            Assert.True(inside > 0 && inside < mask.Length / 2, $"{r.Id}: mask covers {inside} of {mask.Length} pixels");
            // Two shapes of one size can overlap a lot (circle and hexagon), but never entirely.
            Assert.True(differentInside > inside / 50, $"{r.Id}: only {differentInside} of {inside} mask pixels differ");

            // The background is a noisy gray: estimate it from the corner, then find the object's pixels.
            var background = clean[0].R;
            bool IsObject((byte R, byte G, byte B) p) =>
                Math.Max(Math.Abs(p.R - background), Math.Max(Math.Abs(p.G - background), Math.Abs(p.B - background))) > 40;
            switch (r.Category)
            {
                case "color":
                    AssertMeanColor(r.Answer, clean, mask, IsObject, r.Id);
                    AssertMeanColor(r.WrongAnswer, corrupt, mask, IsObject, r.Id);
                    break;
                case "size":
                    int cleanArea = clean.Count(IsObject), corruptArea = corrupt.Count(IsObject);
                    Assert.True(r.Answer == "big" ? cleanArea > 2 * corruptArea : corruptArea > 2 * cleanArea,
                        $"{r.Id}: answer {r.Answer}, clean area {cleanArea}, corrupt area {corruptArea}");
                    break;
            }
        }
    }

    private static void AssertMeanColor(string name, (byte R, byte G, byte B)[] pixels, byte[] mask, Func<(byte R, byte G, byte B), bool> isObject, string id)
    {
        var expected = name switch
        {
            "red" => (220, 30, 30), "blue" => (30, 70, 225), "green" => (30, 165, 50), "yellow" => (245, 225, 30),
            "purple" => (135, 40, 175), "orange" => (250, 135, 20), "white" => (250, 250, 250), "black" => (12, 12, 12),
            "pink" => (250, 125, 195), "brown" => (115, 65, 25), _ => throw new InvalidOperationException(name),
        };
        var object_ = pixels.Where((p, i) => mask[i] == 255 && isObject(p)).ToList();
        Assert.NotEmpty(object_);
        var (r, g, b) = (object_.Average(p => p.R), object_.Average(p => p.G), object_.Average(p => p.B));
        Assert.True(Math.Abs(r - expected.Item1) < 25 && Math.Abs(g - expected.Item2) < 25 && Math.Abs(b - expected.Item3) < 25,
            $"{id}: object mean ({r:F0},{g:F0},{b:F0}) is not {name} {expected}");
    }

    [Fact]
    public void Generate_MatchesTokenLengths_UnderAnyTokenizer()
    {
        // A tokenizer that splits long words: STR must pick replacements of the same piece count per option.
        static int Pieces(string w) => w.Length >= 6 ? 2 : 1;
        using var dir = new TempFolder();
        ShapesTaskGenerator.Generate(dir.Path, AllTasks, 30, 32, seed: 2, tokenCount: Pieces);
        var records = PairsManifest.Read(dir["pairs.jsonl"]);
        foreach (var r in records) AssertStrAligned(r, Pieces);
        Assert.Contains(records, r => Pieces(r.Answer) == 2 && r.Category == "color");

        // Sizes: big and small are one piece each; a tokenizer with no other one-piece size words cannot do STR.
        var e = Assert.Throws<InvalidOperationException>(() =>
            ShapesTaskGenerator.Generate(dir["none"], [ShapesTaskGenerator.SizeTask], 2, 32, tokenCount: w => w is "big" or "small" ? 1 : 3));
        Assert.Contains("shapes-size", e.Message);
    }

    [Fact]
    public void Generate_RejectsUnknownTasksAndTinyImages()
    {
        using var dir = new TempFolder();
        Assert.Throws<ArgumentException>(() => ShapesTaskGenerator.Generate(dir.Path, ["shapes-texture"], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShapesTaskGenerator.Generate(dir.Path, AllTasks, 2, imageSize: 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShapesTaskGenerator.Generate(dir.Path, AllTasks, 0));
    }

    [Fact]
    public void Generate_ThousandsOfPairs_InSeconds()
    {
        using var dir = new TempFolder();
        var watch = Stopwatch.StartNew();
        var report = ShapesTaskGenerator.Generate(dir.Path, AllTasks, countPerTask: 1000, imageSize: 64, seed: 1);
        watch.Stop();
        output.WriteLine($"{report.Written} pairs of 64x64 images in {watch.Elapsed.TotalSeconds:F2} s on {Environment.ProcessorCount} cores");
        Assert.Equal(3000, report.Written);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"took {watch.Elapsed}");
    }
}

public class SvoProbesReaderTests
{
    private const string Header = "sentence,pos_triplet,neg_triplet,subj_neg,verb_neg,obj_neg,pos_url,neg_url,pos_image_id,neg_image_id";

    private static string Row(string sentence, string pos, string neg, string flags, string posId, string negId, string posUrl = "", string negUrl = "") =>
        $"\"{sentence}\",\"{pos}\",\"{neg}\",{flags},{posUrl},{negUrl},{posId},{negId}";

    /// <summary>A CSV with two good rows per category and one row of each kind of problem; images in data/images.</summary>
    private static (string Csv, string Images) Build(TempFolder dir)
    {
        var images = dir["data/images"];
        foreach (var id in new[] { "p1", "n1", "p2", "n2", "p3", "n3", "p4", "n4", "p5", "n5", "p8", "p9", "n9", "p10", "n10", "p13", "n13" })
            FakeData.Image(Path.Combine(images, id + ".jpg"), SKColors.Orange);
        FakeData.Image(Path.Combine(images, "sub/c6p.png"), SKColors.Blue); // found by URL file name, in a subfolder
        FakeData.Image(Path.Combine(images, "c6n.jpg"), SKColors.Green);
        FakeData.Garbage(Path.Combine(images, "n12.jpg"));
        FakeData.Image(Path.Combine(images, "p12.jpg"), SKColors.Red);

        string[] lines =
        [
            Header,
            Row("A man riding a horse.", "man,ride,horse", "woman,ride,horse", "True,False,False", "p1", "n1"),
            Row("A dog catching a ball.", "dog,catch,ball", "cat,catch,ball", "True,False,False", "p2", "n2"),
            Row("A girl sitting on grass.", "girl,sit,grass", "girl,run,grass", "False,True,False", "p3", "n3"),
            Row("A boy eating an apple.", "boy,eat,apple", "boy,throw,apple", "False,True,False", "p4", "n4"),
            Row("A man riding a horse.", "['man,ride,horse']", "['man,ride,bike']", "False,False,True", "p5", "n5"),
            Row("A child holding a cup.", "child,hold,cup", "child,hold,book", "False,False,True", "", "",
                "http://example.com/photos/c6p.png?size=large", "https://example.com/x/c6n.jpg"),
            Row("Broken triplet.", "man,ride", "woman,ride,horse", "True,False,False", "p1", "n1"),          // malformed triplet
            Row("Missing image.", "man,walk,dog", "man,walk,cat", "False,False,True", "p8", "nowhere"),     // missing image
            Row("Two flags.", "man,walk,dog", "woman,walk,cat", "True,False,True", "p9", "n9"),            // ambiguous flags
            Row("A person cooking.", "person,cook,food", "man,cook,food", "1,0,0", "p10", "n10"),          // excluded option
            Row("A man riding a horse again.", "man,ride,horse", "woman,ride,horse", "true,false,false", "p1", "n1"), // duplicate
            Row("Unreadable.", "man,eat,cake", "man,eat,pie", "False,False,True", "p12", "n12"),           // unreadable image
            Row("Mismatch.", "man,eat,cake", "woman,hold,cake", "True,False,False", "p13", "n13"),        // triplets differ twice
            "\"Short row.\",\"a,b,c\"",                                                                     // malformed row
            Row("Bad flag.", "man,eat,cake", "woman,eat,cake", "maybe,False,False", "p13", "n13"),         // malformed row
        ];
        var csv = dir["data/svo_probes.csv"];
        File.WriteAllLines(csv, lines);
        return (csv, images);
    }

    [Fact]
    public void Prepare_WritesTwoPairsPerGoodRow_AndCountsEverySkip()
    {
        using var dir = new TempFolder();
        var (csv, images) = Build(dir);
        var outDir = dir["out"];
        var report = SvoProbesReader.Prepare(csv, images, outDir, new SvoProbesOptions { Seed = 1 });

        Assert.Equal(12, report.Written);
        Assert.Equal(1, report.SkippedFor(SkipReason.MalformedTriplet));
        Assert.Equal(1, report.SkippedFor(SkipReason.MissingImage));
        Assert.Equal(1, report.SkippedFor(SkipReason.AmbiguousNegation));
        Assert.Equal(1, report.SkippedFor(SkipReason.ExcludedOption));
        Assert.Equal(1, report.SkippedFor(SkipReason.Duplicate));
        Assert.Equal(1, report.SkippedFor(SkipReason.UnreadableImage));
        Assert.Equal(1, report.SkippedFor(SkipReason.TripletMismatch));
        Assert.Equal(2, report.SkippedFor(SkipReason.MalformedRow));
        Assert.Equal(9, report.SkippedTotal);
        Assert.Contains(report.Problems, p => p.Contains("n12.jpg"));
        Assert.Contains(report.Problems, p => p.Contains("svo_probes.csv:8")); // the malformed triplet's line
        Assert.Contains(report.Problems, p => p.Contains("nowhere"));

        var records = PairsManifest.Read(Path.Combine(outDir, "pairs.jsonl"));
        Assert.Equal(12, records.Count);
        var byId = records.ToDictionary(r => r.Id);

        var p1 = byId["svo-000001-pos"];
        var n1 = byId["svo-000001-neg"];
        Assert.Equal(("subject", "man", "woman"), (p1.Category, p1.Answer, p1.WrongAnswer));
        Assert.Equal(("woman", "man"), (n1.Answer, n1.WrongAnswer));
        Assert.Contains(p1.Prompt, new[] { "Is the man or the woman riding the horse?", "Is the woman or the man riding the horse?" });
        Assert.Equal(p1.Prompt, n1.Prompt);
        Assert.Equal("../data/images/p1.jpg", p1.Image);
        Assert.Equal("../data/images/n1.jpg", p1.CorruptImage);
        Assert.Equal((p1.CorruptImage, p1.Image), (n1.Image, n1.CorruptImage));

        var p3 = byId["svo-000003-pos"];
        Assert.Equal(("verb", "sitting", "running"), (p3.Category, p3.Answer, p3.WrongAnswer));
        Assert.Contains(p3.Prompt, new[] { "Is the girl sitting or running the grass?", "Is the girl running or sitting the grass?" });

        var p5 = byId["svo-000005-pos"];
        Assert.Equal(("object", "horse", "bike"), (p5.Category, p5.Answer, p5.WrongAnswer));
        Assert.Contains(p5.Prompt, new[] { "Is the man riding the horse or the bike?", "Is the man riding the bike or the horse?" });

        var p6 = byId["svo-000006-pos"];
        Assert.Equal("../data/images/sub/c6p.png", p6.Image);
        Assert.Equal("../data/images/c6n.jpg", p6.CorruptImage);

        // Both images of a row are clean once and corrupt once; the correct option is first in exactly half.
        Assert.Equal(records.Select(r => r.Image).Order(), records.Select(r => r.CorruptImage).Order());
        Assert.Equal(6, records.Count(r => r.Prompt.IndexOf(r.Answer, StringComparison.Ordinal) < r.Prompt.IndexOf(r.WrongAnswer, StringComparison.Ordinal)));

        // STR: the other row's options of the same category, aligned word by word.
        Assert.Contains(p1.CorruptPrompt, new[] { "Is the dog or the cat riding the horse?", "Is the cat or the dog riding the horse?" });
        foreach (var r in records)
        {
            var clean = r.Prompt.Split(' ');
            var corrupt = r.CorruptPrompt!.Split(' ');
            Assert.Equal(clean.Length, corrupt.Length);
            Assert.DoesNotContain(r.Answer, corrupt.Select(w => w.TrimEnd('?')));
            Assert.DoesNotContain(r.WrongAnswer, corrupt.Select(w => w.TrimEnd('?')));
        }
    }

    [Fact]
    public void Prepare_IsDeterministic()
    {
        using var dir = new TempFolder();
        var (csv, images) = Build(dir);
        SvoProbesReader.Prepare(csv, images, dir["a"], new SvoProbesOptions { Seed = 9 });
        SvoProbesReader.Prepare(csv, images, dir["b"], new SvoProbesOptions { Seed = 9 });
        Assert.Equal(File.ReadAllText(dir["a/pairs.jsonl"]), File.ReadAllText(dir["b/pairs.jsonl"]));
    }

    [Fact]
    public void Prepare_MissingColumns_NamesTheFileAndColumns()
    {
        using var dir = new TempFolder();
        var (_, images) = Build(dir);
        var csv = dir["bad.csv"];
        File.WriteAllLines(csv, ["sentence,pos_triplet,neg_triplet,subj_neg,verb_neg,obj_neg,pos_url,pos_image_id", "a,\"a,b,c\",\"a,b,d\",0,0,1,u,p1"]);
        var e = Assert.Throws<TaskInputException>(() => SvoProbesReader.Prepare(csv, images, dir["out"]));
        Assert.Equal(csv, e.FilePath);
        Assert.Contains("neg_url", e.Message);
        Assert.Contains("neg_image_id", e.Message);
    }

    [Fact]
    public void Prepare_EmptyOrMissingImageFolder_NamesIt()
    {
        using var dir = new TempFolder();
        var (csv, _) = Build(dir);
        Directory.CreateDirectory(dir["empty"]);
        var e = Assert.Throws<TaskInputException>(() => SvoProbesReader.Prepare(csv, dir["empty"], dir["out"]));
        Assert.Equal(dir["empty"], e.FilePath);
        e = Assert.Throws<TaskInputException>(() => SvoProbesReader.Prepare(csv, dir["nope"], dir["out"]));
        Assert.Equal(dir["nope"], e.FilePath);
    }

    [Theory]
    [InlineData("man,ride,horse", true)]
    [InlineData("['man,ride,horse']", true)]
    [InlineData("['man,ride,horse', 'man,ride,pony']", true)]
    [InlineData("['[]']", false)]
    [InlineData("[]", false)]
    [InlineData("man,,horse", false)]
    [InlineData("a,b,c,d", false)]
    public void TryParseTriplet(string text, bool ok)
    {
        Assert.Equal(ok, SvoProbesReader.TryParseTriplet(text, out var t));
        if (ok) Assert.Equal(["man", "ride", "horse"], t);
    }
}

public class MitStatesReaderTests
{
    private static string Build(TempFolder dir)
    {
        var images = dir["mit/images"];
        void Add(string folder, params string[] names)
        {
            foreach (var n in names) FakeData.Image(Path.Combine(images, folder, n), SKColors.Brown);
        }
        Add("sliced apple", "a1.jpg", "a2.jpg");
        Add("diced apple", "a3.jpg");
        Add("moldy apple", "a4.png");
        FakeData.Garbage(Path.Combine(images, "moldy apple", "broken.jpg"));
        Add("broken bottle", "b1.jpg");
        Add("empty bottle", "b2.jpg");
        Add("cracked bottle", "b3.jpg");
        Add("thick rope", "r1.jpg");  // the only state of rope: no wrong answer
        Add("shiny apple", "s1.jpg");  // not in any category
        Add("apple", "x1.jpg");        // not "<adjective> <noun>"
        return dir["mit"];
    }

    [Fact]
    public void Prepare_PairsStatesOfTheSameNoun_NeverNearSynonyms()
    {
        using var dir = new TempFolder();
        var root = Build(dir);
        var report = MitStatesReader.Prepare(root, dir["out"], new MitStatesOptions { Seed = 4 });

        Assert.Equal(1, report.SkippedFor(SkipReason.UnreadableImage));
        Assert.Equal(1, report.SkippedFor(SkipReason.NoWrongAnswer));
        Assert.Equal(1, report.SkippedFor(SkipReason.UnknownState));
        Assert.Equal(1, report.SkippedFor(SkipReason.UnknownFolder));
        Assert.Equal(7, report.Written + report.SkippedFor(SkipReason.NoStrOptions));
        Assert.True(report.Written >= 5, report.ToString());

        var groups = MitStatesGroups.Default;
        var records = PairsManifest.Read(dir["out/pairs.jsonl"]);
        Assert.Equal(report.Written, records.Count);
        foreach (var r in records)
        {
            var cleanFolder = Path.GetFileName(Path.GetDirectoryName(r.Image)!);
            var corruptFolder = Path.GetFileName(Path.GetDirectoryName(r.CorruptImage)!);
            var noun = cleanFolder.Split(' ', 2)[1];
            Assert.StartsWith("../mit/images/", r.Image);
            Assert.Equal($"{r.Answer} {noun}", cleanFolder);
            Assert.Equal($"{r.WrongAnswer} {noun}", corruptFolder);
            Assert.False(groups.Synonyms.AreNear(r.Answer, r.WrongAnswer), $"{r.Answer} / {r.WrongAnswer}");
            Assert.Equal(groups.CategoryOf[r.Answer], r.Category);
            Assert.Contains(r.Prompt, new[] { $"Is the {noun} {r.Answer} or {r.WrongAnswer}?", $"Is the {noun} {r.WrongAnswer} or {r.Answer}?" });
            var corruptWords = r.CorruptPrompt!.TrimEnd('?').Split(' ');
            Assert.Equal(r.Prompt.Split(' ').Length, corruptWords.Length);
            Assert.Equal(noun, corruptWords[2]);
            foreach (var option in corruptWords[3..].Where(w => w != "or"))
            {
                Assert.False(groups.Synonyms.AreNear(option, r.Answer));
                Assert.False(groups.Synonyms.AreNear(option, r.WrongAnswer));
            }
        }
        Assert.DoesNotContain(records, r => r.Image.Contains("shiny") || r.Image.Contains("rope") || r.Image.Contains("broken.jpg"));
        Assert.Equal(records.Count / 2, records.Count(r => r.Prompt.IndexOf(r.Answer, StringComparison.Ordinal) < r.Prompt.IndexOf(r.WrongAnswer, StringComparison.Ordinal)), 1.0);
    }

    [Fact]
    public void Prepare_IsSeeded_AndCanKeepWrongAnswersInCategory()
    {
        using var dir = new TempFolder();
        var root = Build(dir);
        MitStatesReader.Prepare(root, dir["a"], new MitStatesOptions { Seed = 2 });
        MitStatesReader.Prepare(Path.Combine(root, "images"), dir["b"], new MitStatesOptions { Seed = 2 }); // the images folder itself works too
        Assert.Equal(File.ReadAllText(dir["a/pairs.jsonl"]).Replace("../mit/images", "X"), File.ReadAllText(dir["b/pairs.jsonl"]).Replace("../mit/images", "X"));

        var report = MitStatesReader.Prepare(root, dir["c"], new MitStatesOptions { Seed = 2, SameCategoryWrongAnswer = true });
        var groups = MitStatesGroups.Default;
        Assert.All(PairsManifest.Read(dir["c/pairs.jsonl"]), r => Assert.Equal(groups.CategoryOf[r.Answer], groups.CategoryOf[r.WrongAnswer]));
        Assert.True(report.SkippedFor(SkipReason.NoWrongAnswer) > 1); // apple states are in different categories
    }

    [Fact]
    public void Prepare_EmptyOrMissingFolder_NamesIt()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir["mit/images"]);
        var e = Assert.Throws<TaskInputException>(() => MitStatesReader.Prepare(dir["mit"], dir["out"]));
        Assert.Equal(dir["mit/images"], e.FilePath);
        e = Assert.Throws<TaskInputException>(() => MitStatesReader.Prepare(dir["none"], dir["out"]));
        Assert.Equal(dir["none"], e.FilePath);
    }

    [Fact]
    public void Groups_LoadFromTheEmbeddedFile_AndReportBadFiles()
    {
        var groups = MitStatesGroups.Default;
        Assert.Equal("shape", groups.CategoryOf["sliced"]);
        Assert.Equal("color", groups.CategoryOf["rusty"]);
        Assert.Equal("texture", groups.CategoryOf["mossy"]);
        Assert.Equal(3, groups.CategoryOf.Values.Distinct().Count());
        Assert.True(groups.Synonyms.AreNear("small", "tiny"));
        Assert.True(groups.Synonyms.AreNear("Cracked", "splintered"));
        Assert.False(groups.Synonyms.AreNear("small", "large"));

        var e = Assert.Throws<TaskInputException>(() => MitStatesGroups.Parse("""{"categories": {"a": ["x"], "b": ["x"]}}""", "groups.json"));
        Assert.Contains("groups.json", e.Message);
        e = Assert.Throws<TaskInputException>(() => MitStatesGroups.Parse("""{"near_synonyms": []}""", "groups.json"));
        Assert.Equal("categories", e.Field);
    }
}

public class Fer2013ReaderTests
{
    private static string Pixels(int seed) =>
        string.Join(' ', Enumerable.Range(0, 2304).Select(i => (i * 7 + seed * 31) % 256));

    private static string Csv(TempFolder dir)
    {
        var lines = new List<string> { "emotion,pixels,Usage" };
        int[] emotions = [3, 3, 0, 4, 6, 5, 3, 1, 2, 0];
        for (var i = 0; i < emotions.Length; i++) lines.Add($"{emotions[i]},{Pixels(i)},{(i < 8 ? "Training" : "PublicTest")}");
        lines.Add($"9,{Pixels(20)},Training");                               // unknown emotion
        lines.Add($"3,{string.Join(' ', Enumerable.Repeat("1", 2000))},Training"); // too few pixels
        lines.Add($"3,{Pixels(21).Replace(" 7 ", " x ")},Training");         // not a number
        var path = dir["fer2013.csv"];
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void PrepareFromCsv_WritesFaces_AndPairsOpposingEmotions()
    {
        using var dir = new TempFolder();
        var csv = Csv(dir);
        var report = Fer2013Reader.Prepare(csv, dir["out"], new Fer2013Options { Seed = 3 });

        Assert.Equal(10, report.Written);
        Assert.Equal(1, report.SkippedFor(SkipReason.UnknownEmotion));
        Assert.Equal(2, report.SkippedFor(SkipReason.MalformedPixels));
        Assert.Contains(report.Problems, p => p.Contains("fer2013.csv:12") && p.Contains("'9'"));
        Assert.Contains(report.Problems, p => p.Contains("fer2013.csv:13") && p.Contains("2000 pixel values"));
        Assert.Contains(report.Problems, p => p.Contains("fer2013.csv:14") && p.Contains("'x'"));

        // Row 1's face, pixel for pixel.
        var face = FakeData.Pixels(dir["out/img/fer-00001.png"], out var w, out var h);
        Assert.Equal((48, 48), (w, h));
        var expected = Pixels(0).Split(' ').Select(byte.Parse).ToArray();
        Assert.Equal(expected, face.Select(p => p.R));
        Assert.All(face, p => Assert.True(p.R == p.G && p.G == p.B));

        var emotionOf = new Dictionary<string, string>();
        int[] codes = [3, 3, 0, 4, 6, 5, 3, 1, 2, 0];
        for (var i = 0; i < codes.Length; i++) emotionOf[$"img/fer-{i + 1:D5}.png"] = Fer2013Reader.Emotions[codes[i]];

        var records = PairsManifest.Read(dir["out/pairs.jsonl"]);
        Assert.Equal(10, records.Count);
        Assert.All(records, r => Assert.Equal($"img/{r.Id}.png", r.Image)); // named after the CSV row
        Assert.Equal(5, records.Count(r => r.Prompt == $"Is this person feeling {r.Answer} or {r.WrongAnswer}?"));
        foreach (var r in records)
        {
            Assert.Equal(emotionOf[r.Image], r.Answer);
            Assert.Equal("emotion", r.Category);
            Assert.Equal(emotionOf[r.CorruptImage], r.WrongAnswer);
            Assert.Contains(r.WrongAnswer, Fer2013Reader.WrongAnswerCandidates(r.Answer));
            Assert.Contains(r.Prompt, new[] { $"Is this person feeling {r.Answer} or {r.WrongAnswer}?", $"Is this person feeling {r.WrongAnswer} or {r.Answer}?" });
            Assert.StartsWith("Is this person feeling ", r.CorruptPrompt);
            Assert.DoesNotContain(r.Answer, r.CorruptPrompt);
            Assert.DoesNotContain(r.WrongAnswer, r.CorruptPrompt);
        }
        Assert.Contains(records, r => r.Answer == "happy");
        Assert.DoesNotContain(records, r => r.Answer == "happy" && r.WrongAnswer == "surprised");
    }

    [Fact]
    public void PrepareFromCsv_FiltersByUsage_AndNamesMissingColumns()
    {
        using var dir = new TempFolder();
        var csv = Csv(dir);
        var report = Fer2013Reader.Prepare(csv, dir["out"], new Fer2013Options { Usage = "Training", AnyOtherEmotion = true });
        Assert.Equal(2, report.SkippedFor(SkipReason.OtherUsage));
        Assert.Equal(8, report.Written + report.SkippedFor(SkipReason.NoStrOptions));
        var records = PairsManifest.Read(dir["out/pairs.jsonl"]);
        Assert.DoesNotContain(records, r => r.Image.EndsWith("fer-00009.png") || r.Image.EndsWith("fer-00010.png"));
        Assert.False(File.Exists(dir["out/img/fer-00009.png"]));

        var bad = dir["bad.csv"];
        File.WriteAllLines(bad, ["emotion,Usage", "3,Training"]);
        var e = Assert.Throws<TaskInputException>(() => Fer2013Reader.Prepare(bad, dir["out2"]));
        Assert.Equal(bad, e.FilePath);
        Assert.Equal("pixels", e.Field);
        Assert.Contains("missing column pixels", e.Message);
    }

    [Fact]
    public void PrepareFromFolders_ReadsEmotionFolders_AndCountsTheRest()
    {
        using var dir = new TempFolder();
        var root = dir["faces/train"];
        FakeData.Image(Path.Combine(root, "happy", "h1.png"), SKColors.White);
        FakeData.Image(Path.Combine(root, "happy", "h2.jpg"), SKColors.White);
        FakeData.Image(Path.Combine(root, "Surprise", "s1.jpg"), SKColors.White);
        FakeData.Image(Path.Combine(root, "angry", "a1.jpg"), SKColors.Black);
        FakeData.Image(Path.Combine(root, "disgust", "d1.jpg"), SKColors.Black);
        FakeData.Image(Path.Combine(root, "neutral", "n1.jpg"), SKColors.Gray);
        FakeData.Garbage(Path.Combine(root, "neutral", "bad.jpg"));
        FakeData.Image(Path.Combine(root, "misc", "m1.jpg"), SKColors.Gray);
        File.WriteAllText(Path.Combine(root, "happy", "notes.txt"), "not an image");

        var report = Fer2013Reader.Prepare(root, dir["out"], new Fer2013Options { Seed = 1 });
        Assert.Equal(6, report.Written);
        Assert.Equal(1, report.SkippedFor(SkipReason.UnreadableImage));
        Assert.Equal(1, report.SkippedFor(SkipReason.UnknownFolder));
        Assert.Contains(report.Problems, p => p.Contains("bad.jpg"));

        var records = PairsManifest.Read(dir["out/pairs.jsonl"]);
        var s1 = records.Single(r => r.Image.EndsWith("s1.jpg"));
        Assert.Equal("surprised", s1.Answer);
        Assert.Equal("../faces/train/Surprise/s1.jpg", s1.Image);
        foreach (var r in records)
        {
            var folder = Path.GetFileName(Path.GetDirectoryName(r.CorruptImage)!).ToLowerInvariant();
            Assert.StartsWith(folder[..3], r.WrongAnswer); // disgust -> disgusted, surprise -> surprised
            Assert.Contains(r.WrongAnswer, Fer2013Reader.WrongAnswerCandidates(r.Answer));
        }
    }

    [Fact]
    public void PrepareFromFolders_EmptyOrMissing_NamesTheFolder()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir["faces/happy"]);
        var e = Assert.Throws<TaskInputException>(() => Fer2013Reader.Prepare(dir["faces"], dir["out"]));
        Assert.Equal(dir["faces"], e.FilePath);
        e = Assert.Throws<TaskInputException>(() => Fer2013Reader.Prepare(dir["nothing"], dir["out"]));
        Assert.Equal(dir["nothing"], e.FilePath);
    }

    [Fact]
    public void WrongAnswers_ComeFromTheOpposingGroup()
    {
        Assert.Equal(["angry", "disgusted", "fearful", "sad", "neutral"], Fer2013Reader.WrongAnswerCandidates("happy"));
        Assert.Equal(["happy", "surprised", "neutral"], Fer2013Reader.WrongAnswerCandidates("sad"));
        Assert.Equal(["angry", "disgusted", "fearful", "happy", "sad", "surprised"], Fer2013Reader.WrongAnswerCandidates("neutral"));
        Assert.Equal(6, Fer2013Reader.WrongAnswerCandidates("happy", anyOther: true).Count);
    }
}
